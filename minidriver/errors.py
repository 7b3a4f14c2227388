"""Windows smart-card status codes and the exception every entry point raises.

The minidriver spec speaks in Windows DWORD return codes. pcsc-lite's headers
disagree with Windows on several of them (most visibly SCARD_E_UNSUPPORTED_FEATURE,
which pcsc-lite aliases to 0x8010001F), so this module defines the Windows values
itself and never imports them from pyscard.
"""

from __future__ import annotations

from enum import IntEnum


class Scard(IntEnum):
    """Windows return codes used by the minidriver API (winerror.h / scarderr.h values)."""

    S_SUCCESS = 0x00000000
    F_INTERNAL_ERROR = 0x80100001
    E_CANCELLED = 0x80100002
    E_INVALID_HANDLE = 0x80100003
    E_INVALID_PARAMETER = 0x80100004
    E_INVALID_TARGET = 0x80100005
    E_NO_MEMORY = 0x80100006
    E_INSUFFICIENT_BUFFER = 0x80100008
    E_UNKNOWN_READER = 0x80100009
    E_TIMEOUT = 0x8010000A
    E_SHARING_VIOLATION = 0x8010000B
    E_NO_SMARTCARD = 0x8010000C
    E_UNKNOWN_CARD = 0x8010000D
    E_PROTO_MISMATCH = 0x8010000F
    E_NOT_READY = 0x80100010
    E_INVALID_VALUE = 0x80100011
    E_SYSTEM_CANCELLED = 0x80100012
    F_COMM_ERROR = 0x80100013
    F_UNKNOWN_ERROR = 0x80100014
    E_NOT_TRANSACTED = 0x80100016
    E_READER_UNAVAILABLE = 0x80100017
    E_NO_SERVICE = 0x8010001D
    E_SERVICE_STOPPED = 0x8010001E
    E_UNEXPECTED = 0x8010001F
    E_UNSUPPORTED_FEATURE = 0x80100022
    E_DIR_NOT_FOUND = 0x80100023
    E_FILE_NOT_FOUND = 0x80100024
    E_NO_DIR = 0x80100025
    E_NO_FILE = 0x80100026
    E_NO_ACCESS = 0x80100027
    E_WRITE_TOO_MANY = 0x80100028
    E_BAD_SEEK = 0x80100029
    E_INVALID_CHV = 0x8010002A
    E_UNKNOWN_RES_MNG = 0x8010002B
    E_NO_SUCH_CERTIFICATE = 0x8010002C
    E_CERTIFICATE_UNAVAILABLE = 0x8010002D
    E_NO_READERS_AVAILABLE = 0x8010002E
    E_COMM_DATA_LOST = 0x8010002F
    E_NO_KEY_CONTAINER = 0x80100030
    E_SERVER_TOO_BUSY = 0x80100031
    E_PIN_CACHE_EXPIRED = 0x80100032
    E_NO_PIN_CACHE = 0x80100033
    E_READ_ONLY_CARD = 0x80100034
    W_UNSUPPORTED_CARD = 0x80100065
    W_UNRESPONSIVE_CARD = 0x80100066
    W_UNPOWERED_CARD = 0x80100067
    W_RESET_CARD = 0x80100068
    W_REMOVED_CARD = 0x80100069
    W_SECURITY_VIOLATION = 0x8010006A
    W_WRONG_CHV = 0x8010006B
    W_CHV_BLOCKED = 0x8010006C
    W_EOF = 0x8010006D
    W_CANCELLED_BY_USER = 0x8010006E
    W_CARD_NOT_AUTHENTICATED = 0x8010006F
    W_CACHE_ITEM_NOT_FOUND = 0x80100070
    W_CACHE_ITEM_STALE = 0x80100071
    W_CACHE_ITEM_TOO_BIG = 0x80100072
    ERROR_FILE_EXISTS = 0x00000050
    ERROR_INSUFFICIENT_BUFFER = 0x0000007A
    ERROR_DIR_NOT_EMPTY = 0x00000091
    ERROR_REVISION_MISMATCH = 0x000004DA
    NTE_BUFFER_TOO_SMALL = 0x80090028


# Module-level aliases with the spec's spelling (SCARD_W_WRONG_CHV, ERROR_FILE_EXISTS, ...).
SCARD_S_SUCCESS = Scard.S_SUCCESS
SCARD_F_INTERNAL_ERROR = Scard.F_INTERNAL_ERROR
SCARD_E_INVALID_HANDLE = Scard.E_INVALID_HANDLE
SCARD_E_INVALID_PARAMETER = Scard.E_INVALID_PARAMETER
SCARD_E_NO_MEMORY = Scard.E_NO_MEMORY
SCARD_E_INSUFFICIENT_BUFFER = Scard.E_INSUFFICIENT_BUFFER
SCARD_E_TIMEOUT = Scard.E_TIMEOUT
SCARD_E_SHARING_VIOLATION = Scard.E_SHARING_VIOLATION
SCARD_E_NO_SMARTCARD = Scard.E_NO_SMARTCARD
SCARD_E_UNKNOWN_CARD = Scard.E_UNKNOWN_CARD
SCARD_E_INVALID_VALUE = Scard.E_INVALID_VALUE
SCARD_E_NOT_TRANSACTED = Scard.E_NOT_TRANSACTED
SCARD_F_COMM_ERROR = Scard.F_COMM_ERROR
SCARD_F_UNKNOWN_ERROR = Scard.F_UNKNOWN_ERROR
SCARD_E_UNEXPECTED = Scard.E_UNEXPECTED
SCARD_E_UNSUPPORTED_FEATURE = Scard.E_UNSUPPORTED_FEATURE
SCARD_E_DIR_NOT_FOUND = Scard.E_DIR_NOT_FOUND
SCARD_E_FILE_NOT_FOUND = Scard.E_FILE_NOT_FOUND
SCARD_E_WRITE_TOO_MANY = Scard.E_WRITE_TOO_MANY
SCARD_E_INVALID_CHV = Scard.E_INVALID_CHV
SCARD_E_NO_READERS_AVAILABLE = Scard.E_NO_READERS_AVAILABLE
SCARD_E_COMM_DATA_LOST = Scard.E_COMM_DATA_LOST
SCARD_E_NO_KEY_CONTAINER = Scard.E_NO_KEY_CONTAINER
SCARD_E_PIN_CACHE_EXPIRED = Scard.E_PIN_CACHE_EXPIRED
SCARD_E_NO_PIN_CACHE = Scard.E_NO_PIN_CACHE
SCARD_E_READ_ONLY_CARD = Scard.E_READ_ONLY_CARD
SCARD_W_UNRESPONSIVE_CARD = Scard.W_UNRESPONSIVE_CARD
SCARD_W_RESET_CARD = Scard.W_RESET_CARD
SCARD_W_REMOVED_CARD = Scard.W_REMOVED_CARD
SCARD_W_SECURITY_VIOLATION = Scard.W_SECURITY_VIOLATION
SCARD_W_WRONG_CHV = Scard.W_WRONG_CHV
SCARD_W_CHV_BLOCKED = Scard.W_CHV_BLOCKED
SCARD_W_CANCELLED_BY_USER = Scard.W_CANCELLED_BY_USER
SCARD_W_CARD_NOT_AUTHENTICATED = Scard.W_CARD_NOT_AUTHENTICATED
SCARD_W_CACHE_ITEM_NOT_FOUND = Scard.W_CACHE_ITEM_NOT_FOUND
SCARD_W_CACHE_ITEM_STALE = Scard.W_CACHE_ITEM_STALE
SCARD_W_CACHE_ITEM_TOO_BIG = Scard.W_CACHE_ITEM_TOO_BIG
ERROR_FILE_EXISTS = Scard.ERROR_FILE_EXISTS
ERROR_INSUFFICIENT_BUFFER = Scard.ERROR_INSUFFICIENT_BUFFER
ERROR_DIR_NOT_EMPTY = Scard.ERROR_DIR_NOT_EMPTY
ERROR_REVISION_MISMATCH = Scard.ERROR_REVISION_MISMATCH
NTE_BUFFER_TOO_SMALL = Scard.NTE_BUFFER_TOO_SMALL

# pcsc-lite (pyscard) codes whose numeric value differs from Windows or that pcsc-lite aliases.
# Everything else in the 0x801000xx range has the same value on both sides.
_PCSCLITE_TO_WINDOWS: dict[int, Scard] = {
    0x8010001F: Scard.E_UNEXPECTED,  # pcsc-lite also calls this SCARD_E_UNSUPPORTED_FEATURE
}


class ScardError(Exception):
    """A minidriver entry point failed; `code` is the Windows DWORD the C function would return.

    `attempts_remaining` carries the pcAttemptsRemaining out-parameter for the
    authentication functions (None where the function has none), because on
    failure that count is the only other useful output.
    """

    def __init__(self, code: int, message: str = "", attempts_remaining: int | None = None) -> None:
        self.code = int(code)
        self.attempts_remaining = attempts_remaining
        name = Scard(self.code).name if self.code in Scard._value2member_map_ else "UNKNOWN"
        text = f"0x{self.code:08X} {name}"
        if message:
            text += f": {message}"
        super().__init__(text)

    @property
    def name(self) -> str:
        return Scard(self.code).name if self.code in Scard._value2member_map_ else f"0x{self.code:08X}"


def from_pcsc(code: int) -> int:
    """Translate a pcsc-lite return code into the Windows code for the same condition."""
    code &= 0xFFFFFFFF
    mapped = _PCSCLITE_TO_WINDOWS.get(code)
    return int(mapped) if mapped is not None else code
