"""Instruction bytes, one IntEnum per application, used by the card handlers and by the host.

Values repeat between enums on purpose: PIV and GIDS both use the ISO 7816-4
interindustry commands, each enum lists what its application implements.
"""

from __future__ import annotations

from enum import IntEnum


class IsoIns(IntEnum):
    """ISO/IEC 7816-4 §11 interindustry commands the card OS and the ISO applet handle."""

    VERIFY = 0x20
    MANAGE_SECURITY_ENVIRONMENT = 0x22
    CHANGE_REFERENCE_DATA = 0x24
    PERFORM_SECURITY_OPERATION = 0x2A
    RESET_RETRY_COUNTER = 0x2C
    ACTIVATE_FILE = 0x44
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47
    GET_CHALLENGE = 0x84
    GENERAL_AUTHENTICATE = 0x87
    SELECT = 0xA4
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA
    GET_DATA_ODD = 0xCB
    PUT_DATA = 0xDA
    PUT_DATA_ODD = 0xDB
    CREATE_FILE = 0xE0
    DELETE_FILE = 0xE4
    TERMINATE_DF = 0xE6


class PivIns(IntEnum):
    """NIST SP 800-73-4 part 2 §3: the PIV card commands."""

    SELECT = 0xA4
    GET_DATA = 0xCB
    PUT_DATA = 0xDB
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    GENERAL_AUTHENTICATE = 0x87
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47


class YubicoIns(IntEnum):
    """Yubico's PIV extensions (the YKPIV_INS_* values of yubico-piv-tool lib/ykpiv.h)."""

    MOVE_KEY = 0xF6
    GET_METADATA = 0xF7
    GET_SERIAL = 0xF8
    ATTEST = 0xF9
    SET_PIN_RETRIES = 0xFA
    RESET = 0xFB
    GET_VERSION = 0xFD
    IMPORT_KEY = 0xFE
    SET_MANAGEMENT_KEY = 0xFF


class GidsIns(IntEnum):
    """GIDS v2 commands (Microsoft GIDS specification v2.0; OpenSC src/libopensc/card-gids.c)."""

    SELECT = 0xA4
    GET_DATA = 0xCB
    PUT_DATA = 0xDB
    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    MANAGE_SECURITY_ENVIRONMENT = 0x22
    PERFORM_SECURITY_OPERATION = 0x2A
    GENERAL_AUTHENTICATE = 0x87
    GENERATE_ASYMMETRIC_KEY_PAIR = 0x47
    GET_CHALLENGE = 0x84
    CREATE_FILE = 0xE0
    ACTIVATE_FILE = 0x44
    DELETE_FILE = 0xE4
    TERMINATE_DF = 0xE6


class VendorIns(IntEnum):
    """vcard's card-level commands, CLA 80 (docs/vendor-commands.md)."""

    GET_CAPABILITIES = 0x5A
    GET_PIN_SET = 0x5B
    ISSUE_SESSION_PIN = 0x5C
    VERIFY_SESSION_PIN = 0x5D
    VERIFY_EXTERNAL = 0x5E
    DEAUTHENTICATE = 0x5F
