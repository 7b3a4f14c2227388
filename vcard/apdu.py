"""ISO 7816-4 command and response APDUs, status words, and the ISOError applets raise.

This is the only module that parses APDU bytes. Everything above it works with
`CommandAPDU` objects and raises `ISOError(SW.X)` to answer with a status word.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from .wire.ins import IsoIns


class SW(IntEnum):
    """Status words with the names used everywhere (logs, traces, tests, scripts).

    Status words that carry a count (61xx, 63Cx, 6Cxx) are built with the helpers
    below; their base values are members so that `sw_name` can name them.
    """

    SUCCESS = 0x9000
    BYTES_REMAINING = 0x6100
    WARNING_NO_INFORMATION = 0x6200
    END_OF_DATA = 0x6282
    VERIFY_FAILED = 0x6300
    VERIFY_FAILED_COUNTER = 0x63C0
    EXECUTION_ERROR = 0x6400
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    FUNCTION_IN_CLA_NOT_SUPPORTED = 0x6800
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_NOT_ALLOWED = 0x6900
    COMMAND_INCOMPATIBLE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_EF = 0x6986
    WRONG_PARAMETERS = 0x6A00
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    LC_INCONSISTENT_WITH_P1P2 = 0x6A87
    REFERENCE_NOT_FOUND = 0x6A88
    FILE_ALREADY_EXISTS = 0x6A89
    DF_NAME_ALREADY_EXISTS = 0x6A8A
    WRONG_P1P2 = 0x6B00
    WRONG_LE = 0x6C00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


def bytes_remaining(count: int) -> int:
    """61xx: `count` more bytes wait for GET RESPONSE (xx=00 means 256 or more)."""
    return 0x6100 | (min(count, 256) & 0xFF)


def verify_failed(tries_left: int) -> int:
    """63Cx: verification failed, x tries left (capped at 15 by the encoding)."""
    # comparisons rather than min/max: PIN status queries, which hosts poll, answer through here
    if tries_left <= 0:
        return 0x63C0
    return 0x63C0 | (tries_left if tries_left < 15 else 15)


_SW_NAMES = {member.value: member.name for member in SW}


def sw_name(sw: int) -> str:
    """A readable name for any status word, including the counted families."""
    name = _SW_NAMES.get(sw)
    if name is not None:
        return name
    if sw & 0xFF00 == 0x6100:
        return f"BYTES_REMAINING({sw & 0xFF or 256})"
    if sw & 0xFFF0 == 0x63C0:
        return f"VERIFY_FAILED({sw & 0x0F} tries left)"
    if sw & 0xFF00 == 0x6C00:
        return f"WRONG_LE(exact length {sw & 0xFF or 256})"
    return f"SW_{sw:04X}"


class ISOError(Exception):
    """Raised by card code to answer a command with a status word (ISOException.throwIt)."""

    def __init__(self, sw: int, message: str = "") -> None:
        self.sw = int(sw)
        self.message = message
        super().__init__(self.sw, message)

    def __str__(self) -> str:
        # formatted on demand: error answers such as 63Cx are on the per-APDU hot path
        return f"{self.sw:04X} {sw_name(self.sw)}" + (f": {self.message}" if self.message else "")


SHORT_MAX_NE = 256
EXTENDED_MAX_NE = 65536
_new = tuple.__new__


class CommandAPDU(NamedTuple):
    """A command APDU of ISO 7816-4 cases 1-4, short or extended.

    `ne` is the maximum number of response bytes the client expects (Le decoded:
    a short Le of 00 means 256, an extended Le of 0000 means 65536), or None when
    the command carries no Le field.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None
    extended: bool = False

    @property
    def p1p2(self) -> int:
        return (self.p1 << 8) | self.p2

    @property
    def is_chained(self) -> bool:
        """CLA bit 0x10: more command data follows in the next APDU (interindustry classes)."""
        return self.cla & 0x80 == 0 and bool(self.cla & 0x10)

    @property
    def response_limit(self) -> int:
        """How many data bytes one response may carry before 61xx chaining is needed.

        When Le is absent we still return data (T=1 clients such as yubico-piv-tool
        send case-3 commands and expect the answer), capped at 256 bytes.
        """
        if self.ne is None:
            return SHORT_MAX_NE
        if self.extended:
            return min(self.ne, 65533)  # a vpcd frame holds 65535 bytes including SW1 SW2
        return min(self.ne, SHORT_MAX_NE)

    @classmethod
    def parse(cls, raw: bytes) -> CommandAPDU:
        """Decode raw bytes; malformed input raises ISOError(WRONG_LENGTH)."""
        if type(raw) is not bytes:
            raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise ISOError(SW.WRONG_LENGTH, f"APDU of {n} bytes is shorter than its header")
        # tuple.__new__ with every field: the generated NamedTuple constructor costs a
        # Python call per APDU, and this runs for every command the card receives.
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return _new(cls, (cla, ins, p1, p2, b"", None, False))
        if n == 5:
            return _new(cls, (cla, ins, p1, p2, b"", raw[4] or SHORT_MAX_NE, False))
        if raw[4] != 0:
            lc = raw[4]
            if n == 5 + lc:
                return _new(cls, (cla, ins, p1, p2, raw[5:], None, False))
            if n == 6 + lc:
                return _new(cls, (cla, ins, p1, p2, raw[5:-1], raw[-1] or SHORT_MAX_NE, False))
            raise ISOError(SW.WRONG_LENGTH, f"Lc={lc} does not match {n - 5} bytes after the header")
        if n < 7:
            raise ISOError(SW.WRONG_LENGTH, "extended length field is truncated")
        length = (raw[5] << 8) | raw[6]
        if n == 7:
            return _new(cls, (cla, ins, p1, p2, b"", length or EXTENDED_MAX_NE, True))
        if length == 0:
            raise ISOError(SW.WRONG_LENGTH, "extended Lc of zero")
        if n == 7 + length:
            return _new(cls, (cla, ins, p1, p2, raw[7:], None, True))
        if n == 9 + length:
            le = (raw[-2] << 8) | raw[-1]
            return _new(cls, (cla, ins, p1, p2, raw[7:-2], le or EXTENDED_MAX_NE, True))
        raise ISOError(SW.WRONG_LENGTH, f"extended Lc={length} does not match {n - 7} bytes")

    def encode(self) -> bytes:
        """Encode, choosing extended length only when the data or Ne need it (or it was asked for)."""
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        extended = self.extended or len(self.data) > 255 or (self.ne or 0) > SHORT_MAX_NE
        if len(self.data) > 65535:
            raise ValueError("command data longer than 65535 bytes")
        if self.ne is not None and not 1 <= self.ne <= EXTENDED_MAX_NE:
            raise ValueError(f"Ne={self.ne} out of range")
        body = b""
        if extended:
            if self.data:
                body += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.ne is not None:
                le = (self.ne % EXTENDED_MAX_NE).to_bytes(2, "big")
                body += le if self.data else b"\x00" + le
        else:
            if self.data:
                body += bytes([len(self.data)]) + self.data
            if self.ne is not None:
                body += bytes([self.ne % SHORT_MAX_NE])
        return header + body


class ResponseAPDU(NamedTuple):
    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def parse(cls, raw: bytes) -> ResponseAPDU:
        if len(raw) < 2:
            raise ValueError(f"response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))


_STATUS_ANSWERS: dict[int, ResponseAPDU] = {}


def status(sw: int) -> ResponseAPDU:
    """A data-less answer with status word `sw`, for a handler to return instead of raising.

    For answers that are not failures of the command but its result, such as the 63Cx
    of a PIN status query, which hosts send in loops: an exception unwinding the card
    OS costs more than the rest of that command. The answers are shared (they are
    immutable), so returning one allocates nothing.
    """
    answer = _STATUS_ANSWERS.get(sw)
    if answer is None:
        answer = _STATUS_ANSWERS.setdefault(sw, ResponseAPDU(b"", int(sw)))
    return answer


_INS_NAMES = {member.value: member.name for member in IsoIns}


def ins_name(ins: int) -> str:
    """The ISO 7816-4 name of an INS byte for traces (applets name their own, see Applet.ins_label)."""
    name = _INS_NAMES.get(ins)
    return name if name is not None else f"INS_{ins:02X}"
