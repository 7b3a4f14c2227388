"""Transports and the APDU processor: how the minidriver layer reaches a card.

Layering follows yubikit: a *transport* moves raw APDUs (PC/SC through pyscard,
or in-process straight into a `vcard` Card); the resource-manager handle
(`rm.CardHandle`) adds transactions and the idle reset on top; `ApduChannel`
turns (CLA, INS, P1, P2, data) into bytes with command chaining and GET RESPONSE,
and raises `ApduError` for a status word other than 9000.

Every transport counts APDUs and bytes and can sleep a fixed `delay` per round
trip, which models smart-card redirection over RDP where each APDU costs a
network round trip (the seeds report logons going from minutes to seconds when
a CSP stopped issuing needless APDUs).
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING, Any, Protocol

from .errors import Scard, ScardError, from_pcsc

if TYPE_CHECKING:
    from vcard.transport.vpcd import SmartCard

log = logging.getLogger("minidriver.transport")
TRAFFIC = 5  # logging level for APDU traces (below DEBUG, as yubikit does)
logging.addLevelName(TRAFFIC, "TRAFFIC")

# SCardEndTransaction / SCardReconnect dispositions (same values on Windows and pcsc-lite)
SCARD_LEAVE_CARD = 0
SCARD_RESET_CARD = 1
SCARD_UNPOWER_CARD = 2


class Transport:
    """Base transport: counting and per-round-trip delay around `_exchange`.

    Subclasses implement `_exchange`, `atr`, `reset` and optionally the PC/SC
    transaction calls. Counters are cumulative; `reset_counters` zeroes them so a
    benchmark can measure one phase.
    """

    name = "transport"

    def __init__(self, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, not {delay}")
        self.delay = delay
        self.apdus_sent = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.round_trips = 0  # APDUs plus control calls that cross the link (transactions, reconnects)

    @property
    def atr(self) -> bytes:
        raise NotImplementedError

    def _exchange(self, apdu: bytes) -> bytes:
        raise NotImplementedError

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return response data + SW1 SW2."""
        log.log(TRAFFIC, "SEND %s", _redact(apdu))
        started = time.perf_counter()
        response = self._exchange(bytes(apdu))
        self.apdus_sent += 1
        self.round_trips += 1
        self.bytes_sent += len(apdu)
        self.bytes_received += len(response)
        if self.delay:
            time.sleep(self.delay)
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(TRAFFIC, "RECV %s (%.1f ms)", _redact_response(apdu, response), elapsed_ms)
        return response

    def _control_round_trip(self) -> None:
        self.round_trips += 1
        if self.delay:
            time.sleep(self.delay)

    def begin_transaction(self) -> None:
        """SCardBeginTransaction on the underlying stack (no-op in-process)."""

    def end_transaction(self, disposition: int = SCARD_LEAVE_CARD) -> None:
        """SCardEndTransaction; SCARD_RESET_CARD resets the card."""
        if disposition in (SCARD_RESET_CARD, SCARD_UNPOWER_CARD):
            self.reset()

    def reset(self) -> None:
        """Warm-reset the card (SCardReconnect with SCARD_RESET_CARD)."""
        raise NotImplementedError

    def reconnect(self) -> None:
        """SCardReconnect(SCARD_LEAVE_CARD): acknowledge a reset someone else did."""

    def close(self) -> None:
        """SCardDisconnect(SCARD_LEAVE_CARD)."""

    def reset_counters(self) -> None:
        self.apdus_sent = self.bytes_sent = self.bytes_received = self.round_trips = 0

    def counters(self) -> dict[str, int]:
        return {
            "apdus": self.apdus_sent,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "round_trips": self.round_trips,
        }


# Commands whose data is a PIN: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER.
_PIN_DATA_INS = frozenset({0x20, 0x24, 0x2C})
# Card-level vendor commands (docs/vendor-commands.md) that carry a session PIN, which
# authenticates a role from any process until a cold reset: as secret as the PIN.
_SESSION_PIN_DATA_INS = frozenset({0x5D})  # VERIFY SESSION PIN
_SESSION_PIN_ANSWER_INS = frozenset({0x5C, 0x5E})  # ISSUE SESSION PIN, VERIFY EXTERNAL


def _is_vendor(apdu: bytes) -> bool:
    return len(apdu) >= 2 and apdu[0] & ~0x10 == 0x80


def _redact(apdu: bytes) -> str:
    """Hex of a command APDU with PIN and session-PIN data hidden: secrets never reach the log."""
    if len(apdu) > 5 and (
        apdu[1] in _PIN_DATA_INS or (_is_vendor(apdu) and apdu[1] in _SESSION_PIN_DATA_INS)
    ):
        return apdu[:5].hex() + f" <{len(apdu) - 5} bytes hidden>"
    return apdu.hex()


def _redact_response(apdu: bytes, response: bytes) -> str:
    """Hex of a response, with the session PIN that ISSUE SESSION PIN / VERIFY EXTERNAL return hidden."""
    if len(response) > 2 and _is_vendor(apdu) and apdu[1] in _SESSION_PIN_ANSWER_INS:
        return f"<{len(response) - 2} bytes hidden> " + response[-2:].hex()
    return response.hex()


class InProcessTransport(Transport):
    """A `vcard` Card in this process (no pcscd), through vcard.transport.inproc."""

    name = "in-process"

    def __init__(self, card: SmartCard, delay: float = 0.0) -> None:
        super().__init__(delay)
        from vcard.transport.inproc import InProcessConnection

        self.connection = InProcessConnection(card)

    @property
    def atr(self) -> bytes:
        return self.connection.atr

    def _exchange(self, apdu: bytes) -> bytes:
        return self.connection.transmit(apdu)

    def reset(self) -> None:
        self._control_round_trip()
        self.connection.reset()


class PcscTransport(Transport):
    """A reader through pcscd (pyscard's low-level `smartcard.scard` API).

    pcsc-lite return codes are translated to the Windows ones (`errors.from_pcsc`).
    """

    name = "pcsc"

    def __init__(self, reader: str | None = None, delay: float = 0.0) -> None:
        super().__init__(delay)
        from smartcard import scard

        self._scard: Any = scard
        rc, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        self._check(rc, "SCardEstablishContext")
        rc, readers = scard.SCardListReaders(self._context, [])
        if rc != 0 or not readers:
            scard.SCardReleaseContext(self._context)
            raise ScardError(Scard.E_NO_READERS_AVAILABLE, "no PC/SC reader")
        if reader is None:
            reader = readers[0]
        else:
            matches = [name for name in readers if name == reader] or [
                name for name in readers if reader in name
            ]
            if not matches:
                scard.SCardReleaseContext(self._context)
                raise ScardError(Scard.E_UNKNOWN_READER, f"{reader!r} not in {readers}")
            reader = matches[0]
        self.reader = reader
        rc, self._handle, self._protocol = scard.SCardConnect(
            self._context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if rc != 0:
            scard.SCardReleaseContext(self._context)
        self._check(rc, f"SCardConnect({reader})")
        self._atr = self._status_atr()

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            code = from_pcsc(rc)
            raise ScardError(code, f"{what} failed ({self._scard.SCardGetErrorMessage(rc)})")

    def _status_atr(self) -> bytes:
        rc, _reader, _state, _protocol, atr = self._scard.SCardStatus(self._handle)
        self._check(rc, "SCardStatus")
        return bytes(atr)

    @property
    def atr(self) -> bytes:
        return self._atr

    def _exchange(self, apdu: bytes) -> bytes:
        rc, response = self._scard.SCardTransmit(self._handle, self._protocol, list(apdu))
        self._check(rc, "SCardTransmit")
        return bytes(response)

    def begin_transaction(self) -> None:
        self._control_round_trip()
        self._check(self._scard.SCardBeginTransaction(self._handle), "SCardBeginTransaction")

    def end_transaction(self, disposition: int = SCARD_LEAVE_CARD) -> None:
        self._control_round_trip()
        self._check(self._scard.SCardEndTransaction(self._handle, disposition), "SCardEndTransaction")

    def reset(self) -> None:
        self._control_round_trip()
        rc, self._protocol = self._scard.SCardReconnect(
            self._handle,
            self._scard.SCARD_SHARE_SHARED,
            self._scard.SCARD_PROTOCOL_T0 | self._scard.SCARD_PROTOCOL_T1,
            self._scard.SCARD_RESET_CARD,
        )
        self._check(rc, "SCardReconnect(RESET)")

    def reconnect(self) -> None:
        self._control_round_trip()
        rc, self._protocol = self._scard.SCardReconnect(
            self._handle,
            self._scard.SCARD_SHARE_SHARED,
            self._scard.SCARD_PROTOCOL_T0 | self._scard.SCARD_PROTOCOL_T1,
            self._scard.SCARD_LEAVE_CARD,
        )
        self._check(rc, "SCardReconnect(LEAVE)")

    def close(self) -> None:
        if self._handle is not None:
            self._scard.SCardDisconnect(self._handle, self._scard.SCARD_LEAVE_CARD)
            self._scard.SCardReleaseContext(self._context)
            self._handle = None


def list_readers() -> list[str]:
    """PC/SC reader names (empty when pcscd has none or is not running)."""
    from smartcard import scard

    rc, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rc != 0:
        return []
    try:
        rc, readers = scard.SCardListReaders(context, [])
        return list(readers) if rc == 0 else []
    finally:
        scard.SCardReleaseContext(context)


# --- APDU processor ---------------------------------------------------------------------------


class ApduError(Exception):
    """The card answered with a status word other than 9000 (data kept for 63Cx-like answers)."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        self.sw = sw
        self.data = data
        super().__init__(f"SW {sw:04X}")


class Exchanger(Protocol):
    def transmit(self, apdu: bytes) -> bytes: ...


SHORT_MAX = 255


def encode_apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """Short APDU encoding (cases 1-4). `le` 256 is encoded as 00."""
    apdu = struct.pack("BBBB", cla, ins, p1, p2)
    if data:
        if len(data) > SHORT_MAX:
            raise ValueError("use ApduChannel.send for chaining")
        apdu += bytes([len(data)]) + data
    if le is not None:
        apdu += bytes([le & 0xFF])
    return apdu


class ApduChannel:
    """Command chaining (CLA bit 0x10, 255-byte blocks) and GET RESPONSE over any exchanger."""

    def __init__(self, link: Exchanger, chunk: int = SHORT_MAX) -> None:
        self.link = link
        self.chunk = chunk

    def send(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0, chain: bool = True
    ) -> bytes:
        """Send a command, chaining data longer than one block; return the full response data."""
        blocks = [data[i : i + self.chunk] for i in range(0, len(data), self.chunk)] or [b""]
        for block in blocks[:-1]:
            response = self.link.transmit(encode_apdu(cla | 0x10, ins, p1, p2, block))
            sw = int.from_bytes(response[-2:], "big")
            if sw != 0x9000:
                raise ApduError(sw, response[:-2])
        response = self.link.transmit(encode_apdu(cla, ins, p1, p2, blocks[-1], le))
        return self._collect(response, cla, ins, p1, p2, blocks[-1])

    def _collect(self, response: bytes, cla: int, ins: int, p1: int, p2: int, last: bytes) -> bytes:
        if len(response) < 2:
            raise ApduError(0x6F00)
        data = response[:-2]
        sw1, sw2 = response[-2], response[-1]
        if sw1 == 0x6C:  # wrong Le: repeat with the exact length
            response = self.link.transmit(encode_apdu(cla, ins, p1, p2, last, sw2))
            data = response[:-2]
            sw1, sw2 = response[-2], response[-1]
        while sw1 == 0x61:
            response = self.link.transmit(encode_apdu(0x00, 0xC0, 0x00, 0x00, b"", sw2))
            data += response[:-2]
            sw1, sw2 = response[-2], response[-1]
        sw = (sw1 << 8) | sw2
        if sw != 0x9000:
            raise ApduError(sw, data)
        return data
