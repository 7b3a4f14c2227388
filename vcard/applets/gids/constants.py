"""GIDS v2 numbers: SELECT answers, file identifiers, DO tags, algorithm identifiers.

Values come from OpenSC's src/libopensc/card-gids.c, Microsoft's GIDS
specification v2.0 and the Windows Smart Card Minidriver Specification v7 (see
docs/gids.md). They are collected here so that the applet, the provisioning code
and the tests agree on every byte; the AID and the INS values both sides use live
in vcard.wire.
"""

from __future__ import annotations

from enum import IntEnum

APPLICATION_FID = 0x3FFF
"""The GIDS application DF; GidsApplet also answers to 3F00, and so do we."""
APPLICATION_FIDS = (0x3FFF, 0x3F00)
EF_ATR_FID = 0x2F01

# SELECT P2 values (ISO 7816-4 table 40)
P2_FCI = 0x00
P2_FCP = 0x04
P2_FMD = 0x08
P2_NO_DATA = 0x0C

DF_FCP = bytes.fromhex("6208 820138 8C03033030")
"""FCP of the application DF: not-shareable DF, create/delete EF by user PIN or admin."""
DF_FMD = bytes.fromhex("6409 5F2F0160 7F6502 8000")
"""FMD: PIN usage policy 60 (application PIN + global PIN)."""
EF_ATR = bytes.fromhex("4301F4 4703080180") + bytes.fromhex("460A") + b"vcard-GIDS"
"""EF.ATR / card service data: capabilities byte 3 = 80 (command chaining, no extended length)."""

# Minidriver data objects (EF, DO)
MASTERFILE = (0xA000, 0xDF1F)
KEYMAP = (0xA000, 0xDF20)
CARDID = (0xA012, 0xDF20)
CARDAPPS = (0xA010, 0xDF21)
CARDCF = (0xA010, 0xDF22)
CMAPFILE = (0xA010, 0xDF23)

CARDAPPS_VALUE = b"mscp\x00\x00\x00\x00"
CARDCF_INITIAL = bytes(6)

# DOs of the application itself (GET DATA 3FFF 5C 02 <tag>)
TAG_TAG_LIST = 0x5C
TAG_PIN_STATUS = 0x7F71
TAG_GLOBAL_PIN_STATUS = 0x7F72
TAG_PUK_STATUS = 0x7F73
TAG_TRIES_LEFT = 0x97
TAG_TRY_LIMIT = 0x93

# Key templates
TAG_KEY_TEMPLATE = 0x70
TAG_KEY_REF_ASYM = 0x84
TAG_KEY_REF_SYM = 0x83
TAG_KEY_VALUE_TEMPLATE = 0xA5
TAG_KEY_TYPE = 0x83
TAG_WRAPPING_KEY = 0x84
TAG_KEY_VALUE = 0x87
TAG_PUBLIC_KEY = 0x7F49
TAG_MODULUS = 0x81
TAG_EXPONENT = 0x82
TAG_EC_POINT = 0x86
TAG_GENERATE_CRT = 0xAC
TAG_ALGORITHM = 0x80
TAG_DYNAMIC_AUTH = 0x7C
TAG_WITNESS = 0x80
TAG_CHALLENGE = 0x81
TAG_RESPONSE = 0x82

# Control reference templates (MSE P2, key EF CRTs)
CRT_AUTHENTICATION = 0xA4
CRT_SIGNATURE = 0xB6
CRT_CONFIDENTIALITY = 0xB8

# File descriptor bytes
FDB_DF = 0x38
FDB_BER_TLV_EF = 0x39
FDB_KEY_EF = 0x18

ADMIN_KEY_REF = 0x80
FIRST_KEY_REF = 0x81
LAST_KEY_REF = 0xFE
KEY_EF_HIGH = 0xB0

# PIN references (VERIFY / CHANGE / RESET RETRY COUNTER P2)
PIN_REF_GLOBAL = 0x00
PIN_REF_USER = 0x80
PIN_REF_PUK = 0x81
PIN_REF_LOGOUT = 0x82

# FCI tag 40 bit values: supported admin authentication protocols
ADMIN_AUTH_MUTUAL = 0x80
ADMIN_AUTH_EXTERNAL = 0x40


class Alg(IntEnum):
    """Size nibble of the algorithm byte (MSE/GENERATE `80`, keymap algid)."""

    ADMIN_3DES = 0x02
    RSA_1024 = 0x06
    RSA_2048 = 0x07
    RSA_3072 = 0x08
    RSA_4096 = 0x09
    ECC_P192 = 0x0A
    ECC_P224 = 0x0B
    ECC_P256 = 0x0C
    ECC_P384 = 0x0D
    ECC_P521 = 0x0E


ALG_KIND: dict[int, str] = {
    Alg.RSA_1024: "rsa1024",
    Alg.RSA_2048: "rsa2048",
    Alg.RSA_3072: "rsa3072",
    Alg.RSA_4096: "rsa4096",
    Alg.ECC_P256: "p256",
    Alg.ECC_P384: "p384",
    Alg.ECC_P521: "p521",
}
KIND_ALG: dict[str, int] = {kind: alg for alg, kind in ALG_KIND.items()}


class Padding(IntEnum):
    """High nibble of the algorithm byte in MSE / key EF CRTs."""

    RAW = 0x00  # B8: raw RSA decipher
    RAW_SIGN = 0x10  # B6: "full SHA off-card", raw RSA on a host-formatted block
    PKCS1_DECIPHER = 0x40  # B8: RSAES-PKCS1-v1_5
    PKCS1_SIGN = 0x50  # B6: RSASSA-PKCS1-v1_5, the card pads
    OAEP = 0x80  # B8: RSAES-OAEP


# The FCPs `gids-tool --initialize` sends (and that provisioning reuses), by FID.
INIT_EF_FCPS: dict[int, bytes] = {
    0xA000: bytes.fromhex("620C 820139 8302A000 8C03033000"),
    0xA010: bytes.fromhex("620C 820139 8302A010 8C03033000"),
    0xA011: bytes.fromhex("620C 820139 8302A011 8C030330FF"),
    0xA012: bytes.fromhex("620C 820139 8302A012 8C03032000"),
    0xA013: bytes.fromhex("620C 820139 8302A013 8C03033030"),
    0xA014: bytes.fromhex("620C 820139 8302A014 8C03032020"),
}
ADMIN_KEY_FCP = bytes.fromhex("621A 820118 8302B080 8C04870020FF A50B A409 800102 830180 9501C0")
