"""Connections: how host code reaches a card, and what each PC/SC call costs.

Two connections with one interface: `PcscConnection` (a reader through pcscd, via
pyscard's low-level `smartcard.scard` API) and `InProcessConnection` (a card object
in this process, no daemon). Both record every PC/SC call they make, or would make,
in a `CallMeter`: the call's name, the bytes each way and the time. The meter can
also add a fixed delay to every call, which models smart-card redirection over RDP
(MS-RDPESC), where each SCard call is one network round trip to the client.

The in-process connection records the calls a PC/SC client would make for the same
work (SCardEstablishContext, SCardListReaders, SCardConnect, SCardStatus on open;
SCardTransmit per APDU; ...), so counts and modelled delays compare across the two.

Errors are `PcscError` carrying pcsc-lite's return code; the minidriver layer
translates them into Windows codes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from enum import IntEnum
from typing import Any, Protocol, Self

log = logging.getLogger("vcard.host")


class Disposition(IntEnum):
    """What SCardEndTransaction, SCardReconnect and SCardDisconnect do with the card (same on
    Windows and pcsc-lite)."""

    LEAVE_CARD = 0
    RESET_CARD = 1
    UNPOWER_CARD = 2
    EJECT_CARD = 3


class PcscError(Exception):
    """A PC/SC call failed. `code` is pcsc-lite's return code (None when no call was made)."""

    def __init__(self, call: str, code: int | None, message: str) -> None:
        self.call = call
        self.code = code
        super().__init__(f"{call}: {message}")


class CallMeter:
    """Counts PC/SC calls by name, with bytes each way and time, and delays each call.

    `delay` (seconds) is added once per call: a model of a link where every call is one
    round trip. Counters are cumulative; `reset` zeroes them so a benchmark can measure
    one phase. Thread-safe: several connections of a process may share one meter.
    """

    def __init__(self, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, not {delay}")
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def record(self, call: str, sent: int = 0, received: int = 0, started: float | None = None) -> None:
        """Count one call; sleep the modelled delay; `started` (perf_counter) adds the call's time."""
        if self.delay:
            time.sleep(self.delay)
        elapsed = time.perf_counter() - started if started is not None else self.delay
        with self._lock:
            self.calls[call] += 1
            self.bytes_sent += sent
            self.bytes_received += received
            self.seconds += elapsed

    @property
    def apdus(self) -> int:
        return self.calls["SCardTransmit"]

    @property
    def round_trips(self) -> int:
        """Every PC/SC call crosses the link once."""
        return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.bytes_sent = self.bytes_received = 0
            self.seconds = 0.0

    def snapshot(self) -> dict[str, Any]:
        """Counters as plain data: apdus, bytes each way, round trips and calls by name."""
        with self._lock:
            return {
                "apdus": self.calls["SCardTransmit"],
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "round_trips": sum(self.calls.values()),
                "calls": dict(self.calls),
            }


class Connection:
    """A connected card: APDUs, transactions, reconnects and the call meter.

    Subclasses implement the `_` methods; the public methods count each call. `reset()`
    is SCardReconnect with SCARD_RESET_CARD: a warm reset and a new card session.
    """

    reader: str = ""

    def __init__(self, meter: CallMeter | None = None) -> None:
        self.meter = meter if meter is not None else CallMeter()
        self.closed = False

    @property
    def atr(self) -> bytes:
        raise NotImplementedError

    def transmit(self, apdu: bytes) -> bytes:
        """SCardTransmit: one command APDU, the response data + SW1 SW2."""
        started = time.perf_counter()
        response = b""
        try:
            response = self._transmit(bytes(apdu))
            return response
        finally:
            self.meter.record("SCardTransmit", len(apdu), len(response), started)

    def begin_transaction(self) -> None:
        """SCardBeginTransaction: exclusive use of the card until `end_transaction`."""
        started = time.perf_counter()
        try:
            self._begin_transaction()
        finally:
            self.meter.record("SCardBeginTransaction", started=started)

    def end_transaction(self, disposition: int = Disposition.LEAVE_CARD) -> None:
        """SCardEndTransaction; SCARD_RESET_CARD resets the card."""
        started = time.perf_counter()
        try:
            self._end_transaction(Disposition(disposition))
        finally:
            self.meter.record("SCardEndTransaction", started=started)

    def reconnect(self, initialization: int = Disposition.LEAVE_CARD) -> None:
        """SCardReconnect: acknowledge a reset someone else did (LEAVE), or reset the card."""
        started = time.perf_counter()
        try:
            self._reconnect(Disposition(initialization))
        finally:
            self.meter.record("SCardReconnect", started=started)

    def reset(self) -> None:
        """Warm-reset the card (SCardReconnect with SCARD_RESET_CARD)."""
        self.reconnect(Disposition.RESET_CARD)

    def close(self, disposition: int = Disposition.LEAVE_CARD) -> None:
        """SCardDisconnect then SCardReleaseContext. Closing twice does nothing."""
        if self.closed:
            return
        self.closed = True
        started = time.perf_counter()
        try:
            self._close(Disposition(disposition))
        finally:
            self.meter.record("SCardDisconnect", started=started)
            self.meter.record("SCardReleaseContext")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _transmit(self, apdu: bytes) -> bytes:
        raise NotImplementedError

    def _begin_transaction(self) -> None:
        raise NotImplementedError

    def _end_transaction(self, disposition: Disposition) -> None:
        raise NotImplementedError

    def _reconnect(self, initialization: Disposition) -> None:
        raise NotImplementedError

    def _close(self, disposition: Disposition) -> None:
        raise NotImplementedError


class CardEndpoint(Protocol):
    """What an in-process connection needs of a card object (vcard's `Card` fits)."""

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...


class InProcessConnection(Connection):
    """A card object in this process, reached as a PC/SC client would reach it in a reader.

    Opening powers the card on (a reader powers a card for its first user) unless
    `power_on` is false. Transactions only count: one process, one caller at a time.
    """

    def __init__(
        self,
        card: CardEndpoint,
        meter: CallMeter | None = None,
        power_on: bool = True,
        reader: str = "in-process",
    ) -> None:
        super().__init__(meter)
        self.card = card
        self.reader = reader
        for call in ("SCardEstablishContext", "SCardListReaders", "SCardConnect", "SCardStatus"):
            self.meter.record(call)
        if power_on:
            card.power_on()

    @property
    def atr(self) -> bytes:
        return bytes(self.card.atr)

    def power_on(self) -> None:
        self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def _transmit(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu)

    def _begin_transaction(self) -> None:
        pass

    def _end_transaction(self, disposition: Disposition) -> None:
        self._dispose(disposition)

    def _reconnect(self, initialization: Disposition) -> None:
        self._dispose(initialization)

    def _close(self, disposition: Disposition) -> None:
        self._dispose(disposition)

    def _dispose(self, disposition: Disposition) -> None:
        if disposition is Disposition.RESET_CARD:
            self.card.reset()
        elif disposition in (Disposition.UNPOWER_CARD, Disposition.EJECT_CARD):
            self.card.power_off()


def _scard() -> Any:
    """pyscard's low-level module, imported when first needed (loading vcard must not need it)."""
    from smartcard import scard

    return scard


class PcscConnection(Connection):
    """The card in a PC/SC reader, through pcscd (pyscard's `smartcard.scard`).

    `reader` is an exact reader name or a part of exactly one; None takes the first
    reader. `share` is SCARD_SHARE_SHARED unless given; `disposition` is what `close()`
    does by default (SCARD_LEAVE_CARD, what most PC/SC applications do).
    """

    def __init__(
        self,
        reader: str | None = None,
        meter: CallMeter | None = None,
        share: int | None = None,
        disposition: int = Disposition.LEAVE_CARD,
    ) -> None:
        super().__init__(meter)
        scard = self._scard = _scard()
        self._share = scard.SCARD_SHARE_SHARED if share is None else share
        self._protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        self._default_disposition = Disposition(disposition)
        self._handle: Any = None
        self._context: Any = None
        rc, self._context = self._call(
            "SCardEstablishContext", scard.SCardEstablishContext, scard.SCARD_SCOPE_USER
        )
        self._check("SCardEstablishContext", rc, "cannot reach pcscd (is it running?)")
        try:
            self.reader = self._choose(reader)
            rc, self._handle, self._protocol = self._call(
                "SCardConnect", scard.SCardConnect, self._context, self.reader, self._share, self._protocols
            )
            self._check("SCardConnect", rc, f"cannot connect to the card in {self.reader!r}")
            rc, _name, _state, _protocol, atr = self._call("SCardStatus", scard.SCardStatus, self._handle)
            self._check("SCardStatus", rc)
            self._atr = bytes(atr)
        except BaseException:
            self._release()
            raise

    def _call(self, name: str, function: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.meter.record(name, started=started)

    def _check(self, call: str, rc: int, what: str = "") -> None:
        if rc != self._scard.SCARD_S_SUCCESS:
            detail = self._scard.SCardGetErrorMessage(rc)
            raise PcscError(call, rc & 0xFFFFFFFF, f"{what}: {detail}" if what else detail)

    def _choose(self, wanted: str | None) -> str:
        scard = self._scard
        rc, readers = self._call("SCardListReaders", scard.SCardListReaders, self._context, [])
        if rc == scard.SCARD_E_NO_READERS_AVAILABLE or (rc == 0 and not readers):
            raise PcscError("SCardListReaders", rc & 0xFFFFFFFF, "pcscd has no reader")
        self._check("SCardListReaders", rc)
        if wanted is None:
            return str(readers[0])
        chosen = [name for name in readers if name == wanted] or [name for name in readers if wanted in name]
        if not chosen:
            raise PcscError(
                "SCardListReaders",
                scard.SCARD_E_UNKNOWN_READER & 0xFFFFFFFF,
                f"no reader named {wanted!r}; readers: {', '.join(readers)}",
            )
        if len(chosen) > 1:
            raise PcscError(
                "SCardListReaders",
                scard.SCARD_E_UNKNOWN_READER & 0xFFFFFFFF,
                f"{wanted!r} matches several readers: {', '.join(chosen)}",
            )
        return str(chosen[0])

    @property
    def atr(self) -> bytes:
        return self._atr

    def _transmit(self, apdu: bytes) -> bytes:
        rc, response = self._scard.SCardTransmit(self._handle, self._protocol, list(apdu))
        self._check("SCardTransmit", rc)
        return bytes(response)

    def _begin_transaction(self) -> None:
        self._check("SCardBeginTransaction", self._scard.SCardBeginTransaction(self._handle))

    def _end_transaction(self, disposition: Disposition) -> None:
        self._check("SCardEndTransaction", self._scard.SCardEndTransaction(self._handle, int(disposition)))

    def _reconnect(self, initialization: Disposition) -> None:
        rc, protocol = self._scard.SCardReconnect(
            self._handle, self._share, self._protocols, int(initialization)
        )
        self._check("SCardReconnect", rc)
        self._protocol = protocol

    def close(self, disposition: int | None = None) -> None:
        super().close(self._default_disposition if disposition is None else disposition)

    def _close(self, disposition: Disposition) -> None:
        try:
            if self._handle is not None:
                self._scard.SCardDisconnect(self._handle, int(disposition))
        finally:
            self._handle = None
            self._release()

    def _release(self) -> None:
        if self._context is not None:
            self._scard.SCardReleaseContext(self._context)
            self._context = None


def list_readers(meter: CallMeter | None = None) -> list[str]:
    """PC/SC reader names (empty when pcscd has none or is not running)."""
    scard = _scard()
    meter = meter if meter is not None else CallMeter()
    rc, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    meter.record("SCardEstablishContext")
    if rc != scard.SCARD_S_SUCCESS:
        return []
    try:
        rc, readers = scard.SCardListReaders(context, [])
        meter.record("SCardListReaders")
        return [str(name) for name in readers] if rc == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(context)
        meter.record("SCardReleaseContext")
