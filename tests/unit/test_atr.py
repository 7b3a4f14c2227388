"""ATR construction and validation (ISO 7816-3 section 8)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcard import atr

# Real ATRs (facts): a GIDS-style card and a YubiKey 4.
REAL_ATRS = [
    "3B8D0180FBA000000397425446590401CF",
    "3BF81300008131FE15597562696B657934D4",
]


@pytest.mark.parametrize("hex_atr", REAL_ATRS)
def test_real_atrs_are_well_formed(hex_atr: str) -> None:
    assert atr.check(bytes.fromhex(hex_atr)) is None


def test_real_atr_historical_bytes() -> None:
    assert atr.historical_bytes(bytes.fromhex(REAL_ATRS[1])) == b"Yubikey4"
    assert atr.historical_bytes(bytes.fromhex(REAL_ATRS[0])) == bytes.fromhex("80FBA000000397425446590401")


@pytest.mark.parametrize("hex_atr", REAL_ATRS)
def test_flipping_a_bit_of_tck_is_named(hex_atr: str) -> None:
    raw = bytearray(bytes.fromhex(hex_atr))
    good_tck = raw[-1]
    raw[-1] ^= 0x01
    problem = atr.check(bytes(raw))
    assert problem is not None
    assert "TCK" in problem
    assert f"{good_tck:02X}" in problem  # says what it should be


def test_t0_only_atr_needs_no_tck() -> None:
    # TS, T0 = 0x02 (no interface bytes, two historical bytes): T=0 implied, no TCK
    assert atr.check(bytes.fromhex("3B021450")) is None
    assert atr.check(bytes.fromhex("3B02145000")) is not None  # a TCK byte too many


def test_minimal_t1_atr_length() -> None:
    # TD1 = 80 (T=0, TD2 follows), TD2 = 01 (T=1): five bytes including TCK = 80^80^01 = 01
    assert atr.check(bytes.fromhex("3B80800101")) is None
    problem = atr.check(bytes.fromhex("3B8080010101"))
    assert problem is not None and "6" in problem and "5" in problem


@pytest.mark.parametrize(
    ("hex_atr", "word"),
    [
        ("3B", "2 to 33"),
        ("3B" + "00" * 33, "2 to 33"),
        ("3C00", "TS"),
        ("3B80", "past the end"),  # TD1 announced, missing
        ("3BF0", "past the end"),  # TA1..TD1 announced, missing
        ("3B8D01", "announce"),  # 13 historical bytes missing
    ],
)
def test_malformed_atrs_are_explained(hex_atr: str, word: str) -> None:
    problem = atr.check(bytes.fromhex(hex_atr))
    assert problem is not None
    assert word in problem


def test_inverse_convention_ts_accepted() -> None:
    assert atr.check(bytes.fromhex("3F00")) is None


def test_build_default_layout() -> None:
    built = atr.build(b"vcard")
    assert built[:4] == bytes.fromhex("3B858001")
    assert built[4:-1] == b"vcard"
    expected_tck = 0
    for value in built[1:-1]:
        expected_tck ^= value
    assert built[-1] == expected_tck
    assert atr.build(b"") == bytes.fromhex("3B80800101")


def test_build_rejects_too_many_historical_bytes() -> None:
    with pytest.raises(ValueError):
        atr.build(bytes(16))


@given(st.binary(max_size=15))
def test_build_then_check_is_none(historical: bytes) -> None:
    built = atr.build(historical)
    assert atr.check(built) is None
    assert atr.historical_bytes(built) == historical
    assert len(built) == 5 + len(historical)


@given(st.binary(max_size=15), st.data())
def test_corrupting_historical_bytes_or_tck_is_detected(historical: bytes, data: st.DataObject) -> None:
    built = bytearray(atr.build(historical))
    # bytes after TS, T0, TD1, TD2: the historical bytes and TCK
    position = data.draw(st.integers(4, len(built) - 1))
    built[position] ^= 1 << data.draw(st.integers(0, 7))
    problem = atr.check(bytes(built))
    assert problem is not None and "TCK" in problem


@given(st.binary(max_size=14), st.integers(0, 15))
def test_wrong_historical_count_is_detected(historical: bytes, count: int) -> None:
    built = bytearray(atr.build(historical))
    if count == len(historical):
        return
    built[1] = 0x80 | count
    problem = atr.check(bytes(built))
    assert problem is not None and "announce" in problem


def test_single_bit_flip_can_make_another_valid_atr() -> None:
    # Why the property above does not cover interface bytes: with TD1 80 -> 90 the
    # ATR 3B 81 80 01 00 TCK reads as TA2=01, TD2=00 (T=0 only, so no TCK) and one
    # historical byte -- a different but well-formed ATR.
    built = atr.build(b"\x00")
    flipped = bytes([built[0], built[1], 0x90, *built[3:]])
    assert atr.check(flipped) is None


@given(st.binary(max_size=40))
def test_check_never_raises(raw: bytes) -> None:
    result = atr.check(raw)
    assert result is None or isinstance(result, str)
    if result is None:
        atr.historical_bytes(raw)  # a well-formed ATR always yields its historical bytes


def test_tck_is_xor_after_ts() -> None:
    assert atr.tck(bytes.fromhex("3B8080")) == 0x00
    assert atr.tck(bytes.fromhex("FF0102")) == 0x03


# --- card capabilities in the historical bytes (ISO 7816-4 §8.1.1.2.7) ----------------------------

YUBIKEY5_ATR = bytes.fromhex("3BFD1300008131FE158073C021C057597562694B657940")


def test_a_yubikey5_atr_offers_extended_length_and_chaining() -> None:
    objects = atr.compact_tlv(atr.historical_bytes(YUBIKEY5_ATR))
    assert objects == {0x7: bytes.fromhex("C021C0"), 0x5: b"YubiKey"}
    assert atr.extended_length(YUBIKEY5_ATR)
    assert atr.software_functions(YUBIKEY5_ATR) & atr.CAPABILITY_COMMAND_CHAINING


@pytest.mark.parametrize(
    ("historical", "extended"),
    [
        ("8073C02180", False),  # chaining only
        ("8073C02140", True),  # extended only
        ("00" + "73C021C0" + "009000", True),  # category 00: objects, then a status indicator
        ("807200C0", False),  # capabilities with two bytes: no software-function byte
        ("8079", False),  # object runs past the end: not compact-TLV
        ("7663617264", False),  # "vcard": not compact-TLV at all
    ],
)
def test_extended_length_follows_the_third_capability_byte(historical: str, extended: bool) -> None:
    assert atr.extended_length(atr.build(bytes.fromhex(historical))) is extended


def test_a_malformed_atr_offers_nothing() -> None:
    assert atr.software_functions(YUBIKEY5_ATR[:-1]) == 0


def test_the_shipped_piv_and_gids_profiles_advertise_extended_length() -> None:
    from vcard.profile import load_profile

    for name in ("piv", "gids", "yubikey5"):
        assert atr.extended_length(load_profile(name).atr), name
    assert not atr.extended_length(load_profile("iso").atr)
