"""Command/response APDU codec (ISO 7816-4 section 5.1, cases 1-4 short and extended)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcard.apdu import (
    SW,
    CommandAPDU,
    ISOError,
    ResponseAPDU,
    bytes_remaining,
    ins_name,
    sw_name,
    verify_failed,
)

HEADER = bytes.fromhex("00A40400")


def wrong_length(raw: bytes) -> None:
    with pytest.raises(ISOError) as info:
        CommandAPDU.parse(raw)
    assert info.value.sw == 0x6700


# ---- parsing by case, with hand-written encodings ---------------------------------------


def test_case_1() -> None:
    apdu = CommandAPDU.parse(HEADER)
    assert (apdu.cla, apdu.ins, apdu.p1, apdu.p2) == (0x00, 0xA4, 0x04, 0x00)
    assert apdu.data == b""
    assert apdu.ne is None
    assert not apdu.extended
    assert apdu.p1p2 == 0x0400


def test_case_2_short_le_00_means_256() -> None:
    assert CommandAPDU.parse(HEADER + b"\x00").ne == 256
    assert CommandAPDU.parse(HEADER + b"\x01").ne == 1
    assert CommandAPDU.parse(HEADER + b"\xff").ne == 255
    assert not CommandAPDU.parse(HEADER + b"\x00").extended


def test_case_3_short() -> None:
    apdu = CommandAPDU.parse(HEADER + b"\x03abc")
    assert apdu.data == b"abc"
    assert apdu.ne is None
    apdu = CommandAPDU.parse(HEADER + b"\xff" + bytes(255))
    assert apdu.data == bytes(255)


def test_case_4_short() -> None:
    apdu = CommandAPDU.parse(HEADER + b"\x02ab\x10")
    assert (apdu.data, apdu.ne) == (b"ab", 16)
    assert CommandAPDU.parse(HEADER + b"\x02ab\x00").ne == 256


def test_case_2_extended() -> None:
    apdu = CommandAPDU.parse(HEADER + bytes.fromhex("000102"))
    assert (apdu.ne, apdu.extended, apdu.data) == (0x0102, True, b"")
    assert CommandAPDU.parse(HEADER + bytes.fromhex("000000")).ne == 65536
    assert CommandAPDU.parse(HEADER + bytes.fromhex("000001")).ne == 1


def test_case_3_extended() -> None:
    data = bytes(range(256)) * 2
    apdu = CommandAPDU.parse(HEADER + b"\x00\x02\x00" + data)
    assert (apdu.data, apdu.ne, apdu.extended) == (data, None, True)
    apdu = CommandAPDU.parse(HEADER + b"\x00\x00\x01Z")
    assert (apdu.data, apdu.ne, apdu.extended) == (b"Z", None, True)


def test_case_4_extended() -> None:
    apdu = CommandAPDU.parse(HEADER + b"\x00\x00\x03abc\x01\x00")
    assert (apdu.data, apdu.ne, apdu.extended) == (b"abc", 256, True)
    assert CommandAPDU.parse(HEADER + b"\x00\x00\x01a\x00\x00").ne == 65536
    data = bytes(65535)
    apdu = CommandAPDU.parse(HEADER + b"\x00\xff\xff" + data + b"\xff\xff")
    assert (len(apdu.data), apdu.ne) == (65535, 65535)


@pytest.mark.parametrize(
    "raw_hex",
    [
        "",
        "00",
        "00A4",
        "00A404",  # shorter than the header
        "00A4040003AABB",  # Lc 3, two bytes
        "00A4040003AABBCCDDEE",  # Lc 3, five bytes (neither case 3 nor case 4)
        "00A404000001",  # extended: length field truncated
        "00A40400000000AA",  # extended Lc of zero with data
        "00A40400000000AABB",  # extended Lc of zero, two more bytes
        "00A4040000000301",  # extended Lc 3, one byte
        "00A40400000003010203AA",  # extended Lc 3 + 1 byte: Le needs two bytes
        "00A404000000030102030000AA",  # extended with one byte too many
    ],
)
def test_malformed_lengths_are_6700(raw_hex: str) -> None:
    wrong_length(bytes.fromhex(raw_hex))


@given(st.binary(min_size=4, max_size=4), st.integers(1, 255), st.integers(0, 300))
def test_short_lc_mismatch_is_6700(header: bytes, lc: int, actual: int) -> None:
    raw = header + bytes([lc]) + bytes(actual)
    if actual == 0:  # then the byte was Le: case 2
        assert CommandAPDU.parse(raw).ne == lc
    elif actual in (lc, lc + 1):
        apdu = CommandAPDU.parse(raw)
        assert len(apdu.data) == lc
        assert (apdu.ne is None) == (actual == lc)
    else:
        wrong_length(raw)


@given(st.integers(1, 600), st.integers(0, 620))
def test_extended_lc_mismatch_is_6700(lc: int, actual: int) -> None:
    raw = HEADER + b"\x00" + lc.to_bytes(2, "big") + bytes(actual)
    if actual == 0:  # then the field was Le: case 2E
        assert CommandAPDU.parse(raw).ne == lc
    elif actual in (lc, lc + 2):
        apdu = CommandAPDU.parse(raw)
        assert len(apdu.data) == lc
        assert apdu.extended
    else:
        wrong_length(raw)


# ---- encoding ---------------------------------------------------------------------------


def test_encode_cases_byte_exact() -> None:
    assert CommandAPDU(0, 0xA4, 4, 0).encode() == HEADER
    assert CommandAPDU(0, 0xA4, 4, 0, ne=256).encode() == HEADER + b"\x00"
    assert CommandAPDU(0, 0xA4, 4, 0, ne=255).encode() == HEADER + b"\xff"
    assert CommandAPDU(0, 0xA4, 4, 0, b"ab").encode() == HEADER + b"\x02ab"
    assert CommandAPDU(0, 0xA4, 4, 0, b"ab", 256).encode() == HEADER + b"\x02ab\x00"
    # extended when Ne or data need it
    assert CommandAPDU(0, 0xA4, 4, 0, ne=257).encode() == HEADER + b"\x00\x01\x01"
    assert CommandAPDU(0, 0xA4, 4, 0, ne=65536).encode() == HEADER + b"\x00\x00\x00"
    assert CommandAPDU(0, 0xA4, 4, 0, bytes(256)).encode() == HEADER + b"\x00\x01\x00" + bytes(256)
    assert (
        CommandAPDU(0, 0xA4, 4, 0, bytes(256), 65536).encode()
        == HEADER + b"\x00\x01\x00" + bytes(256) + b"\x00\x00"
    )
    # extended when asked for even if short would do
    assert CommandAPDU(0, 0xA4, 4, 0, b"a", 1, extended=True).encode() == HEADER + b"\x00\x00\x01a\x00\x01"
    assert CommandAPDU(0, 0xA4, 4, 0, ne=1, extended=True).encode() == HEADER + b"\x00\x00\x01"


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        CommandAPDU(0, 0, 0, 0, bytes(65536)).encode()
    with pytest.raises(ValueError):
        CommandAPDU(0, 0, 0, 0, ne=0).encode()
    with pytest.raises(ValueError):
        CommandAPDU(0, 0, 0, 0, ne=65537).encode()


byte = st.integers(0, 255)


@st.composite
def command_apdus(draw: st.DrawFn) -> CommandAPDU:
    extended = draw(st.booleans())
    max_data = 65535 if extended else 255
    data = draw(st.one_of(st.just(b""), st.binary(min_size=1, max_size=min(max_data, 700))))
    max_ne = 65536 if extended else 256
    ne = draw(st.one_of(st.none(), st.integers(1, max_ne)))
    return CommandAPDU(
        draw(byte), draw(byte), draw(byte), draw(byte), data, ne, extended and (bool(data) or ne is not None)
    )


@given(command_apdus())
def test_round_trip(apdu: CommandAPDU) -> None:
    raw = apdu.encode()
    parsed = CommandAPDU.parse(raw)
    assert (parsed.cla, parsed.ins, parsed.p1, parsed.p2) == (apdu.cla, apdu.ins, apdu.p1, apdu.p2)
    assert parsed.data == apdu.data
    assert parsed.ne == apdu.ne
    # extended exactly when it was asked for or needed
    needed = len(apdu.data) > 255 or (apdu.ne or 0) > 256
    assert parsed.extended == (apdu.extended or needed)
    assert parsed.encode() == raw
    # the length of the encoding follows from the case
    lc_len = 0 if not apdu.data else (3 if parsed.extended else 1)
    le_len = 0 if apdu.ne is None else ((2 if apdu.data else 3) if parsed.extended else 1)
    assert len(raw) == 4 + lc_len + len(apdu.data) + le_len


@given(st.binary(max_size=300))
def test_parse_any_bytes_is_apdu_or_6700(raw: bytes) -> None:
    try:
        apdu = CommandAPDU.parse(raw)
    except ISOError as error:
        assert error.sw == SW.WRONG_LENGTH
    else:
        assert apdu.encode() == raw  # every accepted encoding is the canonical one
        assert CommandAPDU.parse(apdu.encode()) == apdu


def test_response_limit() -> None:
    assert CommandAPDU(0, 0, 0, 0).response_limit == 256
    assert CommandAPDU(0, 0, 0, 0, ne=10).response_limit == 10
    assert CommandAPDU(0, 0, 0, 0, ne=256).response_limit == 256
    assert CommandAPDU(0, 0, 0, 0, ne=1000, extended=True).response_limit == 1000
    assert CommandAPDU(0, 0, 0, 0, ne=65536, extended=True).response_limit == 65533
    assert CommandAPDU(0, 0, 0, 0, b"x", extended=True).response_limit == 256


def test_is_chained() -> None:
    assert CommandAPDU(0x10, 0, 0, 0).is_chained
    assert CommandAPDU(0x50, 0, 0, 0).is_chained
    assert not CommandAPDU(0x00, 0, 0, 0).is_chained
    assert not CommandAPDU(0x90, 0, 0, 0).is_chained  # proprietary class: bit 5 is not chaining


# ---- responses and status words -------------------------------------------------------


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    response = ResponseAPDU(data, sw)
    raw = response.encode()
    assert raw[-2:] == bytes([sw >> 8, sw & 0xFF])
    assert ResponseAPDU.parse(raw) == response
    assert (response.sw1, response.sw2) == (sw >> 8, sw & 0xFF)


def test_response_parse_needs_status_word() -> None:
    with pytest.raises(ValueError):
        ResponseAPDU.parse(b"\x90")


def test_bytes_remaining() -> None:
    assert bytes_remaining(1) == 0x6101
    assert bytes_remaining(255) == 0x61FF
    assert bytes_remaining(256) == 0x6100
    assert bytes_remaining(5000) == 0x6100


def test_verify_failed() -> None:
    assert verify_failed(3) == 0x63C3
    assert verify_failed(0) == 0x63C0
    assert verify_failed(-1) == 0x63C0
    assert verify_failed(20) == 0x63CF


def test_names() -> None:
    assert sw_name(0x9000) == "SUCCESS"
    assert sw_name(0x6A82) == "FILE_NOT_FOUND"
    assert sw_name(0x6110) == "BYTES_REMAINING(16)"
    assert sw_name(0x6100) == "BYTES_REMAINING"  # the base value is a member
    assert sw_name(0x63C2) == "VERIFY_FAILED(2 tries left)"
    assert sw_name(0x6C10) == "WRONG_LE(exact length 16)"
    assert sw_name(0x1234) == "SW_1234"
    assert ins_name(0xA4) == "SELECT"
    assert ins_name(0x01) == "INS_01"
    assert ins_name(0xC0) == "GET_RESPONSE"
    assert ins_name(0xDB) == "PUT_DATA_ODD"


def test_iso_error() -> None:
    error = ISOError(SW.FILE_NOT_FOUND, "no such applet")
    assert error.sw == 0x6A82
    assert type(error.sw) is int
    assert "6A82" in str(error) and "FILE_NOT_FOUND" in str(error) and "no such applet" in str(error)
