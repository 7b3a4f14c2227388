"""PIV data objects (SP 800-73 Part 1 Appendix A): tags, read rules and generated contents.

Objects are stored as the value of their `53` wrapper (what PUT DATA wrote, what GET
DATA returns inside `53`). Discovery and Key History are generated from the profile
and the card contents so that they stay consistent with what the card really holds.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable

from ... import tlv
from ...wire.aids import NIST_RID, PIV_AID

TAG_DISCOVERY = 0x7E
TAG_BIT_GROUP = 0x7F61
TAG_CARD_AUTH_CERT = 0x5FC101
TAG_CHUID = 0x5FC102
TAG_FINGERPRINTS = 0x5FC103
TAG_AUTH_CERT = 0x5FC105
TAG_SECURITY_OBJECT = 0x5FC106
TAG_CCC = 0x5FC107
TAG_FACIAL_IMAGE = 0x5FC108
TAG_PRINTED_INFO = 0x5FC109
TAG_SIGNATURE_CERT = 0x5FC10A
TAG_KEY_MANAGEMENT_CERT = 0x5FC10B
TAG_KEY_HISTORY = 0x5FC10C
TAG_IRIS = 0x5FC121
TAG_SM_SIGNER = 0x5FC122
TAG_PAIRING_CODE = 0x5FC123
TAG_YUBICO_ADMIN = 0x5FFF00
TAG_ATTESTATION_CERT = 0x5FFF01

# Readable only with a PIN verified (Appendix A "Access rule for read: PIN").
PIN_PROTECTED = frozenset({TAG_FINGERPRINTS, TAG_FACIAL_IMAGE, TAG_PRINTED_INFO, TAG_IRIS, TAG_PAIRING_CODE})

# Certificate container of each key reference: 9A, 9C, 9D, 9E, then retired 82..95 -> 5FC10D..5FC120.
CERT_TAGS: dict[int, int] = {
    0x9A: TAG_AUTH_CERT,
    0x9C: TAG_SIGNATURE_CERT,
    0x9D: TAG_KEY_MANAGEMENT_CERT,
    0x9E: TAG_CARD_AUTH_CERT,
    0xF9: TAG_ATTESTATION_CERT,
    **{0x82 + i: 0x5FC10D + i for i in range(20)},
}
RETIRED_CERT_TAGS = tuple(0x5FC10D + i for i in range(20))


def tag_key(tag: int) -> str:
    """How an object tag is written in the state document."""
    return f"{tag:X}"


def is_storable(tag: int) -> bool:
    """PUT/GET DATA accept any three-byte object ID 5F 00 00 .. 5F FF FF (opaque bytes).

    SP 800-73-4 Part 1 Appendix A names 5FC1xx; a YubiKey stores any 5Fxxxx, and ykman's
    `piv objects import` and Yubico's tools use IDs outside 5FC1xx (5FFFxx for their own data).
    """
    return tag >> 16 == 0x5F


def application_property_template(label: str, algorithms: Iterable[int]) -> bytes:
    """The SELECT response (Pt2 Table 3): full AID, RID authority, label, one AC per algorithm."""
    parts = [
        tlv.encode(0x4F, PIV_AID),
        tlv.encode(0x79, [tlv.encode(0x4F, NIST_RID)]),
        tlv.encode(0x50, label.encode("ascii")),
    ]
    parts += [
        tlv.encode(0xAC, [tlv.encode(0x80, bytes([alg])), tlv.encode(0x06, b"\x00")]) for alg in algorithms
    ]
    return tlv.encode(0x61, parts)


def discovery(global_pin: bool, global_primary: bool) -> bytes:
    """Discovery object 7E (Pt1 3.3.2): AID + PIN usage policy.

    Byte 1: 0x40 PIV PIN, +0x20 global PIN satisfies the PIV access rules. Byte 2: 0x10
    PIV PIN primary, 0x20 global PIN primary (only meaningful with the global PIN).
    """
    first = 0x40 | (0x20 if global_pin else 0)
    second = (0x20 if global_primary else 0x10) if global_pin else 0x00
    return tlv.encode(TAG_DISCOVERY, [tlv.encode(0x4F, PIV_AID), tlv.encode(0x5F2F, bytes([first, second]))])


# FASC-N of a non-government card (agency code 9999, the value Yubico's tools write): clients
# then take the card's unique identifier from the GUID.
NON_GOVERNMENT_FASCN = bytes.fromhex("d4e739da739ced39ce739d836858210842108421c84210c3eb")


def new_chuid(guid: bytes | None = None, expiry: datetime.date | None = None) -> bytes:
    """A CHUID (Pt1 Table 9) with a random GUID: FASC-N, GUID, expiry, empty signature."""
    guid = guid or secrets.token_bytes(16)
    expiry = expiry or ten_years_from(datetime.date.today())
    return b"".join(
        [
            tlv.encode(0x30, NON_GOVERNMENT_FASCN),
            tlv.encode(0x34, guid),
            tlv.encode(0x35, expiry.strftime("%Y%m%d").encode("ascii")),
            tlv.encode(0x3E, b""),
            tlv.encode(0xFE, b""),
        ]
    )


def ten_years_from(day: datetime.date) -> datetime.date:
    """The same day ten years on; 29 February becomes 28 February (`replace` would raise)."""
    try:
        return day.replace(year=day.year + 10)
    except ValueError:
        return day.replace(year=day.year + 10, day=28)


def new_ccc(card_id: bytes | None = None) -> bytes:
    """A Card Capability Container (Pt1 Table 8): data model 0x10, random card identifier.

    51 bytes, the layout yubico-piv-tool's `get_cccid` expects.
    """
    card_id = card_id or secrets.token_bytes(14)
    return b"".join(
        [
            tlv.encode(0xF0, bytes.fromhex("A0000001 16 FF 02".replace(" ", "")) + card_id),
            tlv.encode(0xF1, b"\x21"),
            tlv.encode(0xF2, b"\x21"),
            tlv.encode(0xF3, b""),
            tlv.encode(0xF4, b"\x00"),
            tlv.encode(0xF5, b"\x10"),
            tlv.encode(0xF6, b""),
            tlv.encode(0xF7, b""),
            tlv.encode(0xFA, b""),
            tlv.encode(0xFB, b""),
            tlv.encode(0xFC, b""),
            tlv.encode(0xFD, b""),
            tlv.encode(0xFE, b""),
        ]
    )


def key_history(on_card: int) -> bytes:
    """Key History (Pt1 3.3.3): how many retired keys have their certificate on the card.

    OpenSC reads retired certificates 82.. up to this count only, so the applet reports
    the highest retired slot holding a certificate.
    """
    return b"".join([tlv.encode(0xC1, bytes([on_card])), tlv.encode(0xC2, b"\x00"), tlv.encode(0xFE, b"")])


def certificate_container(der: bytes) -> bytes:
    """A certificate object (70 cert, 71 CertInfo=uncompressed, FE LRC), as PUT DATA writes it."""
    return b"".join([tlv.encode(0x70, der), tlv.encode(0x71, b"\x00"), tlv.encode(0xFE, b"")])
