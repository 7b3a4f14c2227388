"""Byte-exact encodings of the minidriver structures, constants and error codes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidriver
from minidriver import (
    BCRYPT_ECCKEY_BLOB,
    CARD_CACHE_FILE_FORMAT,
    CARD_CAPABILITIES,
    CARD_FREE_SPACE_INFO,
    CARD_KEY_SIZES,
    CARD_RSA_DECRYPT_INFO,
    CARD_SIGNING_INFO,
    CONTAINER_INFO,
    CONTAINER_MAP_RECORD,
    PIN_CACHE_POLICY,
    PIN_INFO,
    PRIVATEKEYBLOB,
    PUBLICKEYBLOB,
    PinCachePolicyType,
    PinPurpose,
    PinType,
    Scard,
    ScardError,
)
from minidriver.errors import from_pcsc
from minidriver.structures import StructureError, pack_cmapfile, unpack_cmapfile


def test_cardcf_is_six_little_endian_bytes() -> None:
    cf = CARD_CACHE_FILE_FORMAT(1, 2, 0x0304, 0x0506)
    assert cf.pack() == bytes.fromhex("01 02 04 03 06 05")
    assert CARD_CACHE_FILE_FORMAT.unpack(bytes.fromhex("01 02 04 03 06 05")) == cf


def test_cardcf_extra_application_counters_follow_as_dwords() -> None:
    cf = CARD_CACHE_FILE_FORMAT(1, 0, 0, 0, (0x11223344,))
    assert cf.pack() == bytes.fromhex("01 00 0000 0000 44332211")
    assert CARD_CACHE_FILE_FORMAT.unpack(cf.pack()).extra == (0x11223344,)


def test_cardcf_bump_wraps_like_the_c_types() -> None:
    cf = CARD_CACHE_FILE_FORMAT(1, 0xFF, 0xFFFF, 7).bumped(pins=True, containers=True)
    assert (cf.bPinsFreshness, cf.wContainersFreshness, cf.wFilesFreshness) == (0, 0, 7)


def test_container_map_record_layout() -> None:
    record = CONTAINER_MAP_RECORD("abc", 0x03, 0, 0, 2048)
    raw = record.pack()
    assert len(raw) == 86
    assert raw[:8] == b"a\0b\0c\0\0\0"
    assert raw[80:] == bytes.fromhex("03 00 0000 0008")
    assert CONTAINER_MAP_RECORD.unpack(raw) == record


def test_container_map_record_name_limit_is_39_characters() -> None:
    CONTAINER_MAP_RECORD("x" * 39).pack()
    with pytest.raises(StructureError):
        CONTAINER_MAP_RECORD("x" * 40).pack()


def test_cmapfile_keeps_deleted_records_in_place() -> None:
    records = [
        CONTAINER_MAP_RECORD("a", 1, 0, 0, 1024),
        CONTAINER_MAP_RECORD(),
        CONTAINER_MAP_RECORD("c", 3, 0, 256, 0),
    ]
    raw = pack_cmapfile(records)
    assert len(raw) == 3 * 86 and raw[86:172] == bytes(86)
    assert unpack_cmapfile(raw) == records
    with pytest.raises(StructureError):
        unpack_cmapfile(raw[:-1])


def test_pin_info_is_nine_dwords() -> None:
    info = PIN_INFO(
        6,
        PinType.AlphaNumericPinType,
        PinPurpose.PrimaryCardPin,
        0x02,
        0x04,
        PIN_CACHE_POLICY(6, PinCachePolicyType.PinCacheNormal, 0),
        0,
    )
    raw = info.pack()
    assert raw == struct.pack("<9I", 6, 0, 5, 2, 4, 6, 0, 0, 0)
    assert PIN_INFO.unpack(raw) == info


def test_dword_structures() -> None:
    assert CARD_CAPABILITIES(1, 1, 0).pack() == struct.pack("<3I", 1, 1, 0)
    assert CARD_FREE_SPACE_INFO(1, 0xFFFFFFFF, 3, 4).pack() == struct.pack("<4I", 1, 0xFFFFFFFF, 3, 4)
    assert CARD_KEY_SIZES.unpack(struct.pack("<5I", 1, 1024, 2048, 4096, 1024)) == CARD_KEY_SIZES(
        1, 1024, 2048, 4096, 1024
    )


def test_publickeyblob_is_capi_layout_with_little_endian_modulus() -> None:
    modulus = int.from_bytes(bytes(range(1, 129)), "big") | (1 << 1023)
    blob = PUBLICKEYBLOB.for_keyspec(modulus, 65537, minidriver.AT_KEYEXCHANGE).pack()
    assert blob[:8] == bytes.fromhex("06 02 0000 00a40000")  # PUBLICKEYBLOB, CUR_BLOB_VERSION, CALG_RSA_KEYX
    assert blob[8:20] == b"RSA1" + struct.pack("<II", 1024, 65537)
    assert blob[20:] == modulus.to_bytes(128, "little")
    signature_blob = PUBLICKEYBLOB.for_keyspec(modulus, 3, minidriver.AT_SIGNATURE).pack()
    assert signature_blob[4:8] == bytes.fromhex("00240000")  # CALG_RSA_SIGN
    assert PUBLICKEYBLOB.unpack(blob).modulus == modulus


def test_privatekeyblob_round_trip() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 1024)
    n = key.private_numbers()
    blob = PRIVATEKEYBLOB(n.public_numbers.n, 65537, n.p, n.q, n.dmp1, n.dmq1, n.iqmp, n.d)
    raw = blob.pack()
    assert raw[8:12] == b"RSA2" and len(raw) == 20 + 128 * 2 + 64 * 5
    assert PRIVATEKEYBLOB.unpack(raw) == blob


def test_ecc_key_blob_magics_and_big_endian_coordinates() -> None:
    blob = BCRYPT_ECCKEY_BLOB.public("ecdsa", 256, 1, 2).pack()
    assert blob[:8] == bytes.fromhex("45435331 20000000")  # "ECS1", cbKey 32
    assert blob[8:40] == (1).to_bytes(32, "big") and blob[40:] == (2).to_bytes(32, "big")
    ecdh = BCRYPT_ECCKEY_BLOB.public("ecdh", 384, 3, 4).pack()
    assert ecdh[:8] == b"ECK3" + struct.pack("<I", 48)
    assert BCRYPT_ECCKEY_BLOB.unpack(ecdh).usage == "ecdh"
    with pytest.raises(StructureError):
        BCRYPT_ECCKEY_BLOB.unpack(b"ECS1" + struct.pack("<I", 48) + bytes(96))


def test_signing_info_c_layout_x64_and_x86() -> None:
    info = CARD_SIGNING_INFO(2, 5, 2, 0x40000000, 0x800C, b"\x11" * 32, dwPaddingType=4)
    x64 = info.pack(8, {"pbData": 0x1122334455667788})
    assert len(x64) == 72 == CARD_SIGNING_INFO.c_size(8)
    assert struct.unpack_from("<IB3xIII4xQI", x64) == (2, 5, 2, 0x40000000, 0x800C, 0x1122334455667788, 32)
    assert struct.unpack_from("<I", x64, 64) == (4,)
    x86 = info.pack(4)
    assert len(x86) == 44
    assert struct.unpack_from("<I", x86, 24) == (32,) and struct.unpack_from("<I", x86, 40) == (4,)
    decoded, pointers = CARD_SIGNING_INFO.unpack(x64)
    assert pointers["pbData"] == 0x1122334455667788
    assert (decoded.bContainerIndex, decoded.cbData, decoded.dwPaddingType) == (5, 32, 4)


def test_rsa_decrypt_info_c_layout() -> None:
    info = CARD_RSA_DECRYPT_INFO(2, 1, 1, b"\0" * 256, dwPaddingType=8)
    assert CARD_RSA_DECRYPT_INFO.c_size(8) == 48 and CARD_RSA_DECRYPT_INFO.c_size(4) == 28
    raw = info.pack(8)
    assert struct.unpack_from("<I", raw, 24) == (256,) and struct.unpack_from("<I", raw, 40) == (8,)


def test_container_info_lengths_follow_buffers() -> None:
    info = CONTAINER_INFO(1, 0, 0, b"abc")
    assert info.cbSigPublicKey == 3 and info.cbKeyExPublicKey == 0
    assert CONTAINER_INFO.c_size(8) == 40  # DWORD DWORD DWORD (pad) PBYTE DWORD (pad) PBYTE


def test_pin_set_helpers() -> None:
    assert minidriver.CREATE_PIN_SET(minidriver.ROLE_ADMIN) == 0x04
    pins = minidriver.SET_PIN(minidriver.SET_PIN(0, 1), 3)
    assert pins == 0x0A and minidriver.IS_PIN_SET(pins, 3) and not minidriver.IS_PIN_SET(pins, 2)
    assert minidriver.CLEAR_PIN(pins, 1) == 0x08


def test_constants_have_the_spec_values() -> None:
    assert minidriver.CARD_AUTHENTICATE_GENERATE_SESSION_PIN == 0x10000000
    assert minidriver.CARD_AUTHENTICATE_SESSION_PIN == 0x20000000
    assert minidriver.CARD_PIN_SILENT_CONTEXT == 0x40
    assert minidriver.CP_CARD_PIN_STRENGTH_VERIFY == "PIN Strength Verify"
    assert minidriver.CCP_PIN_IDENTIFIER == "PIN Identifier"
    assert (minidriver.AT_KEYEXCHANGE, minidriver.AT_SIGNATURE, minidriver.AT_ECDHE_P521) == (1, 2, 8)


def test_error_codes_are_windows_values_not_pcsc_lite() -> None:
    assert minidriver.SCARD_W_WRONG_CHV == 0x8010006B
    assert minidriver.SCARD_E_UNSUPPORTED_FEATURE == 0x80100022  # pcsc-lite says 0x8010001F
    assert minidriver.ERROR_REVISION_MISMATCH == 0x4DA
    assert from_pcsc(0x8010001F) == Scard.E_UNEXPECTED
    assert from_pcsc(0x80100068) == Scard.W_RESET_CARD
    error = ScardError(Scard.W_WRONG_CHV, "x", attempts_remaining=2)
    assert error.code == 0x8010006B and error.attempts_remaining == 2 and "W_WRONG_CHV" in str(error)


def test_all_entry_points_exist_with_spec_names() -> None:
    names = {
        "CardAcquireContext",
        "CardDeleteContext",
        "CardQueryCapabilities",
        "CardCreateContainer",
        "CardCreateContainerEx",
        "CardDeleteContainer",
        "CardGetContainerInfo",
        "CardAuthenticatePin",
        "CardGetChallenge",
        "CardAuthenticateChallenge",
        "CardUnblockPin",
        "CardChangeAuthenticator",
        "CardDeauthenticate",
        "CardCreateDirectory",
        "CardDeleteDirectory",
        "CardCreateFile",
        "CardReadFile",
        "CardWriteFile",
        "CardDeleteFile",
        "CardEnumFiles",
        "CardGetFileInfo",
        "CardQueryFreeSpace",
        "CardQueryKeySizes",
        "CardSignData",
        "CardRSADecrypt",
        "CardConstructDHAgreement",
        "CardDeriveKey",
        "CardDestroyDHAgreement",
        "CardGetChallengeEx",
        "CardAuthenticateEx",
        "CardChangeAuthenticatorEx",
        "CardDeauthenticateEx",
        "CardGetContainerProperty",
        "CardSetContainerProperty",
        "CardGetProperty",
        "CardSetProperty",
        "CardGetSharedKeyHandle",
        "CardImportSessionKey",
        "CardGetAlgorithmProperty",
        "CardGetKeyProperty",
        "CardSetKeyProperty",
        "CardDestroyKey",
        "CardProcessEncryptedData",
        "MDImportSessionKey",
        "MDEncryptData",
    }
    assert names == set(minidriver.ENTRY_POINTS)
    assert all(callable(getattr(minidriver, name)) for name in names)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_cardcf_round_trip(version: int, pins: int, containers: int, files: int) -> None:
    cf = CARD_CACHE_FILE_FORMAT(version, pins, containers, files)
    assert CARD_CACHE_FILE_FORMAT.unpack(cf.pack()) == cf


@given(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), max_size=39),
    st.integers(0, 3),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
)
def test_cmap_record_round_trip(name: str, flags: int, sig: int, kx: int) -> None:
    record = CONTAINER_MAP_RECORD(name, flags, 0, sig, kx)
    assert CONTAINER_MAP_RECORD.unpack(record.pack()) == record
