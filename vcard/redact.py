"""How APDUs appear in logs and traces: secrets hidden, everything else in hex.

One place decides what is secret, so the host's TRAFFIC log, the card's `--trace`
and the script recorder agree. Hidden are the data of commands that carry a PIN,
a PUK, a session PIN, a management or admin key response, or a private key being
imported, and the data of answers that carry a session PIN. Length stays visible
(it is useful when debugging, and a PIN's length is bounded by the profile anyway).
"""

from __future__ import annotations

from .wire.ins import GidsIns, IsoIns, VendorIns, YubicoIns
from .wire.vendor import VENDOR_CLA

# ISO 7816-4 interindustry commands whose data is a PIN or PUK.
_PIN_INS = frozenset({IsoIns.VERIFY, IsoIns.CHANGE_REFERENCE_DATA, IsoIns.RESET_RETRY_COUNTER})
# Yubico PIV extensions: IMPORT ASYMMETRIC KEY (private key) and SET MANAGEMENT KEY.
_YUBICO_SECRET_INS = frozenset({YubicoIns.IMPORT_KEY, YubicoIns.SET_MANAGEMENT_KEY})
_PIV_MANAGEMENT_KEY = 0x9B
_GIDS_KEY_TEMPLATE = 0x70  # PUT DATA 3FFF of a key import template on a GIDS card
# Card-level vendor commands (class 80): VERIFY SESSION PIN carries one; ISSUE SESSION PIN
# and VERIFY EXTERNAL answer with one.
_VENDOR_SECRET_COMMAND_INS = frozenset({VendorIns.VERIFY_SESSION_PIN})
_VENDOR_SECRET_ANSWER_INS = frozenset({VendorIns.ISSUE_SESSION_PIN, VendorIns.VERIFY_EXTERNAL})


def _is_vendor(apdu: bytes) -> bool:
    return len(apdu) >= 2 and apdu[0] & ~0x10 == VENDOR_CLA


def command_is_secret(apdu: bytes) -> bool:
    """Whether the data of this command APDU must not be logged."""
    if len(apdu) <= 5:
        return False
    cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
    if _is_vendor(apdu):
        return ins in _VENDOR_SECRET_COMMAND_INS
    if cla & 0x80:
        return False
    if ins in _PIN_INS or ins in _YUBICO_SECRET_INS:
        return True
    if ins == IsoIns.GENERAL_AUTHENTICATE:
        # PIV management key (P2 9B) and the GIDS admin key (P1 P2 00 00) mutual authentication
        return p2 == _PIV_MANAGEMENT_KEY or (p1, p2) == (0x00, 0x00)
    gids_key_import = ins == GidsIns.PUT_DATA and (p1, p2) == (0x3F, 0xFF)
    return gids_key_import and _first_data_byte(apdu) == _GIDS_KEY_TEMPLATE


def _first_data_byte(apdu: bytes) -> int | None:
    if apdu[4] != 0:
        return apdu[5]
    return apdu[7] if len(apdu) > 7 else None


def answer_is_secret(command: bytes) -> bool:
    """Whether the response data to this command must not be logged."""
    return _is_vendor(command) and command[1] in _VENDOR_SECRET_ANSWER_INS


def command_text(apdu: bytes) -> str:
    """Hex of a command APDU with secret data replaced by its length."""
    if command_is_secret(apdu):
        return apdu[:5].hex().upper() + f" <{len(apdu) - 5} bytes hidden>"
    return apdu.hex().upper()


def response_text(command: bytes, response: bytes) -> str:
    """Hex of a response APDU (data + SW1 SW2) with secret data replaced by its length."""
    if len(response) > 2 and answer_is_secret(command):
        return f"<{len(response) - 2} bytes hidden> " + response[-2:].hex().upper()
    return response.hex().upper()
