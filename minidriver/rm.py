"""A model of the Windows smart-card resource manager (SCardSvr), with terminal-server sessions.

What it models, because the minidriver spec and the sign-in stories depend on it:

- Transactions: SCardBeginTransaction/SCardEndTransaction around every minidriver
  call; the caller owns them and may hold one across several calls. A handle that
  wants the card while another holds a transaction **waits**, as on Windows; it does
  not fail. SCardTransmit outside a transaction is a short transaction of its own
  and waits the same way.
- The five-second rule ("If a transaction is held on the card for more than five
  seconds with no operations happening on that card, then the card is reset",
  SCardBeginTransaction remarks): a waiter's wait is timed to the holder's idle
  deadline; when it passes, the idle holder's transaction is ended with a card reset
  (SCardEndTransaction with SCARD_RESET_CARD on the holder's own connection, so pcscd
  releases it too), which frees the waiters. With nobody waiting, the rule is applied
  at the next call on the card, which is when anyone could notice it. Every handle,
  the idle holder included, then reports SCARD_W_RESET_CARD until it reconnects
  (Windows 8+ behaviour).
- Several handles on one card (processes, or sessions of a terminal server): a
  reset caused by one is reported to the others.
- Sessions: each handle belongs to a `Session` (a terminal-server session ID and the
  time it connected). The Base CSP's data cache is keyed by session and card, so no
  session ever sees another's cached data (`Session.cache_scope`).
- `ResourceManagerHub`: one resource manager per card for every context of the
  process, like SCardSvr. `legacy=True` reproduces the CSP card-handle cache that
  did not support multi-user sessions: one process-wide lock, taken at the start of
  a transaction and held until its end, and a cache shared by every session. One
  user's idle transaction then blocks every other user's sign-in, on every card.

The clock is injectable so unit tests drive the idle rule without sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from vcard.host import Connection, Disposition, InProcessConnection

from .errors import Scard, ScardError
from .transport import scard_errors

log = logging.getLogger("minidriver.rm")

DEFAULT_IDLE_RESET_SECONDS = 5.0
SCARD_LEAVE_CARD = Disposition.LEAVE_CARD
_RESETTING = (Disposition.RESET_CARD, Disposition.UNPOWER_CARD)


@dataclass(frozen=True)
class Session:
    """A logon session: the console (0) or a terminal-server session, and when it connected."""

    id: int = 0
    connected_at: float = field(default_factory=time.time)

    @property
    def cache_scope(self) -> bytes:
        """The key prefix of this session's cache entries: session ID and connect time."""
        return f"session {self.id} @ {self.connected_at:.6f}|".encode()


CONSOLE = Session(0, 0.0)


class ResourceManager:
    """One card's arbiter, shared by every `CardHandle` on that card.

    `connection` is the default connection for `connect()` (one process, one handle,
    as before sessions); handles of other sessions bring their own.
    """

    def __init__(
        self,
        connection: Connection | None = None,
        idle_reset_seconds: float | None = DEFAULT_IDLE_RESET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        legacy_lock: threading.RLock | None = None,
    ) -> None:
        self.connection = connection
        self.idle_reset_seconds = idle_reset_seconds
        self.clock = clock
        self.legacy_lock = legacy_lock
        self.handles: list[CardHandle] = []
        self.holder: CardHandle | None = None
        self.last_activity = clock()
        self.resets = 0
        self.busy = 0  # transmits in flight: an operation in progress is activity
        self._changed = threading.Condition()

    def connect(self, connection: Connection | None = None, session: Session = CONSOLE) -> CardHandle:
        """SCardConnect: a new handle on this card, over `connection` (the manager's by default)."""
        connection = connection if connection is not None else self.connection
        if connection is None:
            raise ScardError(Scard.E_INVALID_HANDLE, "no connection for the new handle")
        handle = CardHandle(self, connection, session)
        with self._changed:
            self.handles.append(handle)
        return handle

    # --- the idle rule ----------------------------------------------------------------------

    def check_idle(self) -> None:
        """Apply the idle rule now: a transaction held without card activity too long is reset."""
        with self._changed:
            self._expire_if_idle()

    def _idle_deadline(self) -> float | None:
        if self.holder is None or self.busy or not self.idle_reset_seconds:
            return None
        return self.last_activity + self.idle_reset_seconds

    def _expire_if_idle(self) -> None:
        deadline = self._idle_deadline()
        if deadline is None or self.clock() <= deadline:
            return
        holder = self.holder
        assert holder is not None
        log.info(
            "session %d held a transaction idle for more than %.3g s: resetting the card",
            holder.session.id,
            self.idle_reset_seconds,
        )
        self.holder = None
        holder.depth = 0
        try:
            with scard_errors():
                if holder.transaction_per_apdu:
                    holder.connection.reset()
                else:
                    holder.connection.end_transaction(Disposition.RESET_CARD)
        except ScardError as error:  # the card went away meanwhile: nothing left to release
            log.info("resetting the idle card: %s", error)
        self._after_reset(by=None)

    # --- waiting for the card ----------------------------------------------------------------

    def _acquire(self, handle: CardHandle) -> None:
        """Wait until `handle` may use the card; the caller holds `_changed`."""
        while True:
            self._expire_if_idle()
            handle.raise_if_reset()
            if self.holder is None or self.holder is handle:
                return
            deadline = self._idle_deadline()
            if deadline is not None and self.clock is not time.monotonic:
                # a test clock does not move while we wait: report the conflict instead of hanging
                raise ScardError(Scard.E_SHARING_VIOLATION, "another handle holds a transaction")
            started = time.monotonic()
            self._changed.wait(None if deadline is None else max(deadline - self.clock(), 0.001))
            handle.waited += time.monotonic() - started

    def reset_card(self, by: CardHandle) -> None:
        """`by` resets the card; every other handle will see SCARD_W_RESET_CARD."""
        with scard_errors():
            by.connection.reset()
        with self._changed:
            self._after_reset(by)

    def _after_reset(self, by: CardHandle | None) -> None:
        self.resets += 1
        for handle in self.handles:
            if handle is not by:
                handle.reset_pending = True
        self.last_activity = self.clock()
        self._changed.notify_all()


class CardHandle:
    """An SCARDHANDLE: transmit and transactions, waiting and reset reporting as on Windows 8+."""

    def __init__(self, rm: ResourceManager, connection: Connection, session: Session = CONSOLE) -> None:
        self.rm = rm
        self.connection = connection
        self.session = session
        self.reset_pending = False
        self.depth = 0  # nested begin/end from the API layer count as one SCard transaction
        self.closed = False
        self.waited = 0.0  # seconds spent waiting for other handles' transactions
        # The naive CSP's pattern: no PC/SC transaction spans two APDUs. The handle still owns
        # the card between begin and end here (waiters wait); on the wire each SCardTransmit
        # is wrapped in its own SCardBeginTransaction/SCardEndTransaction.
        self.transaction_per_apdu = False
        self._holds_legacy_lock = False

    @property
    def in_transaction(self) -> bool:
        return self.rm.holder is self

    def raise_if_reset(self) -> None:
        if self.closed:
            raise ScardError(Scard.E_INVALID_HANDLE, "handle closed")
        if self.reset_pending:
            raise ScardError(Scard.W_RESET_CARD, "the card was reset")

    def begin_transaction(self) -> None:
        """SCardBeginTransaction: waits while another handle holds one. Re-entrant (counts depth)."""
        rm = self.rm
        with rm._changed:
            if rm.holder is self:
                rm._expire_if_idle()
                self.raise_if_reset()
                if rm.holder is self:
                    self.depth += 1
                    return
        self._take_legacy_lock()
        try:
            with rm._changed:
                rm._acquire(self)
                rm.holder = self
                self.depth = 1
                rm.last_activity = rm.clock()
                rm._changed.notify_all()
            if not self.transaction_per_apdu:
                with scard_errors():
                    self.connection.begin_transaction()
        except BaseException:
            with rm._changed:
                if rm.holder is self:
                    rm.holder = None
                    self.depth = 0
                    rm._changed.notify_all()
            self._release_legacy_lock()
            raise

    def end_transaction(self, disposition: int = SCARD_LEAVE_CARD) -> None:
        """SCardEndTransaction. An idle expiry while held is reported here too."""
        rm = self.rm
        try:
            with rm._changed:
                rm._expire_if_idle()
                if rm.holder is not self:
                    if self.reset_pending:
                        raise ScardError(
                            Scard.W_RESET_CARD, "the card was reset while the transaction was idle"
                        )
                    raise ScardError(Scard.E_NOT_TRANSACTED, "no transaction held")
                self.depth -= 1
                if self.depth > 0 and disposition == SCARD_LEAVE_CARD:
                    return
                self.depth = 0
                rm.holder = None
                rm.last_activity = rm.clock()
                rm._changed.notify_all()
            if not self.transaction_per_apdu:
                with scard_errors():
                    self.connection.end_transaction(
                        SCARD_LEAVE_CARD if disposition in _RESETTING else disposition
                    )
            if disposition in _RESETTING:
                rm.reset_card(by=self)
        finally:
            if rm.holder is not self:
                self._release_legacy_lock()

    def transmit(self, apdu: bytes) -> bytes:
        """SCardTransmit; outside a transaction it is a short transaction of its own (and waits)."""
        rm = self.rm
        with rm._changed:
            rm._acquire(self)
            implicit = rm.holder is None
            if implicit:
                rm.holder = self
            rm.busy += 1
        try:
            with scard_errors():
                if not self.transaction_per_apdu:
                    return self.connection.transmit(apdu)
                self.connection.begin_transaction()
                try:
                    return self.connection.transmit(apdu)
                finally:
                    self.connection.end_transaction()
        finally:
            with rm._changed:
                rm.busy -= 1
                if implicit and rm.holder is self:
                    rm.holder = None
                rm.last_activity = rm.clock()
                rm._changed.notify_all()

    def reconnect(self, initialization: int = SCARD_LEAVE_CARD) -> None:
        """SCardReconnect: acknowledge a reset (LEAVE) or cause one (RESET)."""
        if self.closed:
            raise ScardError(Scard.E_INVALID_HANDLE, "handle closed")
        rm = self.rm
        with rm._changed:
            if rm.holder is self:
                rm.holder = None
                self.depth = 0
                rm._changed.notify_all()
        self._release_legacy_lock()
        if initialization in _RESETTING:
            rm.reset_card(by=self)
        else:
            with scard_errors():
                self.connection.reconnect()
        self.reset_pending = False

    def disconnect(self, disposition: int = SCARD_LEAVE_CARD) -> None:
        """SCardDisconnect."""
        if self.closed:
            return
        rm = self.rm
        with rm._changed:
            if rm.holder is self:
                rm.holder = None
                rm._changed.notify_all()
        self._release_legacy_lock()
        if disposition in _RESETTING:
            rm.reset_card(by=self)
        self.closed = True
        with rm._changed:
            rm.handles.remove(self)

    # --- the pre-hotfix CSP: one lock across sessions, held during a transaction -------------

    def _take_legacy_lock(self) -> None:
        lock = self.rm.legacy_lock
        if lock is not None and not self._holds_legacy_lock:
            started = time.monotonic()
            lock.acquire()
            self.waited += time.monotonic() - started
            self._holds_legacy_lock = True

    def _release_legacy_lock(self) -> None:
        lock = self.rm.legacy_lock
        if lock is not None and self._holds_legacy_lock:
            self._holds_legacy_lock = False
            lock.release()


def card_key(connection: Connection) -> Hashable:
    """What identifies the card behind a connection: the card object in process, else the reader."""
    if isinstance(connection, InProcessConnection):
        return ("in-process", id(connection.card))
    return ("reader", connection.reader)


class ResourceManagerHub:
    """SCardSvr for one process: one `ResourceManager` per card, shared by every session.

    `legacy=True` models the CSP card-handle cache without multi-user session support:
    one process-wide lock held from the start to the end of every transaction, and
    cache entries shared across sessions (`cache_scope` is empty).
    """

    def __init__(
        self, idle_reset_seconds: float | None = DEFAULT_IDLE_RESET_SECONDS, legacy: bool = False
    ) -> None:
        self.idle_reset_seconds = idle_reset_seconds
        self.legacy = legacy
        self._legacy_lock = threading.RLock() if legacy else None
        self._managers: dict[Hashable, ResourceManager] = {}
        self._lock = threading.Lock()

    def connect(self, connection: Connection, session: Session = CONSOLE) -> CardHandle:
        """SCardConnect for `session`: a handle on the card behind `connection`."""
        key = card_key(connection)
        with self._lock:
            manager = self._managers.get(key)
            if manager is None:
                manager = ResourceManager(None, self.idle_reset_seconds, legacy_lock=self._legacy_lock)
                self._managers[key] = manager
        return manager.connect(connection, session)

    def cache_scope(self, session: Session) -> bytes:
        return b"" if self.legacy else session.cache_scope
