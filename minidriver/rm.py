"""A model of the Windows smart-card resource manager (SCardSvr) for one card.

What it models, because the minidriver spec depends on it:

- Transactions: SCardBeginTransaction/SCardEndTransaction around every minidriver
  call; the caller owns them and may hold one across several calls.
- The five-second rule ("If a transaction is held on the card for more than five
  seconds with no operations happening on that card, then the card is reset",
  SCardBeginTransaction remarks): the idle timeout is configurable; the reset
  happens through the connection (a real warm reset, so the card drops its
  security state), and the next call on every handle reports SCARD_W_RESET_CARD
  until that handle reconnects (Windows 8+ behaviour).
- Several handles on one card (processes): a reset caused by one is reported to
  the others; a transaction held by one excludes the others.

The clock is injectable so unit tests drive the timer without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from vcard.host import Connection, Disposition

from .errors import Scard, ScardError
from .transport import scard_errors

SCARD_LEAVE_CARD = Disposition.LEAVE_CARD
_RESETTING = (Disposition.RESET_CARD, Disposition.UNPOWER_CARD)

log = logging.getLogger("minidriver.rm")

DEFAULT_IDLE_RESET_SECONDS = 5.0


class ResourceManager:
    """Per-card arbiter shared by every `CardHandle` on that card."""

    def __init__(
        self,
        connection: Connection,
        idle_reset_seconds: float | None = DEFAULT_IDLE_RESET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.idle_reset_seconds = idle_reset_seconds
        self.clock = clock
        self.handles: list[CardHandle] = []
        self.holder: CardHandle | None = None
        self.last_activity = clock()
        self.resets = 0

    def connect(self) -> CardHandle:
        """SCardConnect: a new handle on this card."""
        handle = CardHandle(self)
        self.handles.append(handle)
        return handle

    def check_idle(self) -> None:
        """Apply the idle rule: a transaction held without card activity too long resets the card."""
        if self.holder is None or not self.idle_reset_seconds:
            return
        if self.clock() - self.last_activity > self.idle_reset_seconds:
            log.info("transaction idle for more than %.3g s: resetting the card", self.idle_reset_seconds)
            self.holder = None
            self.reset_card(by=None)

    def reset_card(self, by: CardHandle | None) -> None:
        """Reset the card; every handle except `by` will see SCARD_W_RESET_CARD."""
        with scard_errors():
            self.connection.reset()
        self.resets += 1
        for handle in self.handles:
            if handle is not by:
                handle.reset_pending = True
        self.last_activity = self.clock()


class CardHandle:
    """An SCARDHANDLE: transmit and transactions, with the reset reporting of Windows 8+."""

    def __init__(self, rm: ResourceManager) -> None:
        self.rm = rm
        self.reset_pending = False
        self.depth = 0  # nested begin/end from the API layer count as one SCard transaction
        self.closed = False

    @property
    def connection(self) -> Connection:
        return self.rm.connection

    @property
    def in_transaction(self) -> bool:
        return self.rm.holder is self

    def _ready(self) -> None:
        if self.closed:
            raise ScardError(Scard.E_INVALID_HANDLE, "handle closed")
        self.rm.check_idle()
        if self.reset_pending:
            raise ScardError(Scard.W_RESET_CARD, "the card was reset")

    def begin_transaction(self) -> None:
        """SCardBeginTransaction. Re-entrant for the holder (counts depth)."""
        self._ready()
        if self.rm.holder is self:
            self.depth += 1
            return
        if self.rm.holder is not None:
            raise ScardError(Scard.E_SHARING_VIOLATION, "another handle holds a transaction")
        with scard_errors():
            self.connection.begin_transaction()
        self.rm.holder = self
        self.depth = 1
        self.rm.last_activity = self.rm.clock()

    def end_transaction(self, disposition: int = SCARD_LEAVE_CARD) -> None:
        """SCardEndTransaction. Idle expiry while held is detected here too."""
        self.rm.check_idle()
        if self.rm.holder is not self:
            if self.reset_pending:
                raise ScardError(Scard.W_RESET_CARD, "the card was reset while the transaction was idle")
            raise ScardError(Scard.E_NOT_TRANSACTED, "no transaction held")
        self.depth -= 1
        if self.depth > 0 and disposition == SCARD_LEAVE_CARD:
            return
        self.depth = 0
        self.rm.holder = None
        with scard_errors():
            self.connection.end_transaction(SCARD_LEAVE_CARD if disposition in _RESETTING else disposition)
        if disposition in _RESETTING:
            self.rm.reset_card(by=self)

    def transmit(self, apdu: bytes) -> bytes:
        """SCardTransmit; outside a transaction it is its own short transaction (as on Windows)."""
        self._ready()
        if self.rm.holder is not None and self.rm.holder is not self:
            raise ScardError(Scard.E_SHARING_VIOLATION, "another handle holds a transaction")
        try:
            with scard_errors():
                return self.connection.transmit(apdu)
        finally:
            self.rm.last_activity = self.rm.clock()

    def reconnect(self, initialization: int = SCARD_LEAVE_CARD) -> None:
        """SCardReconnect: acknowledge a reset (LEAVE) or cause one (RESET)."""
        if self.closed:
            raise ScardError(Scard.E_INVALID_HANDLE, "handle closed")
        if self.rm.holder is self:
            self.rm.holder = None
            self.depth = 0
        if initialization in _RESETTING:
            self.rm.reset_card(by=self)
        else:
            with scard_errors():
                self.connection.reconnect()
        self.reset_pending = False

    def disconnect(self, disposition: int = SCARD_LEAVE_CARD) -> None:
        """SCardDisconnect."""
        if self.closed:
            return
        if self.rm.holder is self:
            self.rm.holder = None
        if disposition in _RESETTING:
            self.rm.reset_card(by=self)
        self.closed = True
        self.rm.handles.remove(self)
