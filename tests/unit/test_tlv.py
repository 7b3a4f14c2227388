"""BER-TLV codec: tags, lengths, nesting, strict decoding, paths."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcard import tlv
from vcard.apdu import ISOError

# ---- tags and lengths, byte exact ------------------------------------------------------


def test_tag_bytes() -> None:
    assert tlv.tag_bytes(0x5C) == b"\x5c"
    assert tlv.tag_bytes(0x7F49) == b"\x7f\x49"
    assert tlv.tag_bytes(0x5FC105) == b"\x5f\xc1\x05"
    assert tlv.tag_bytes(0) == b"\x00"
    with pytest.raises(ValueError):
        tlv.tag_bytes(-1)


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "8180"),
        (0xFF, "81FF"),
        (0x100, "820100"),
        (0xFFFF, "82FFFF"),
        (0x10000, "83010000"),
        (0xFFFFFF, "83FFFFFF"),
        (0x1000000, "8401000000"),
        (0xFFFFFFFF, "84FFFFFFFF"),
    ],
)
def test_encode_length_forms(length: int, encoded: str) -> None:
    assert tlv.encode_length(length) == bytes.fromhex(encoded)


def test_encode_length_limits() -> None:
    with pytest.raises(ValueError):
        tlv.encode_length(0x100000000)
    with pytest.raises(ValueError):
        tlv.encode_length(-1)


def test_encode_known_structures() -> None:
    assert tlv.encode(0x5C, b"\x5f\xc1\x05") == bytes.fromhex("5C035FC105")
    # PIV GENERAL AUTHENTICATE template with an empty response tag and a challenge
    template = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, b"\x01\x02")])
    assert template == bytes.fromhex("7C06 8200 81020102".replace(" ", ""))
    assert tlv.encode(0x53, bytes(200))[:3] == bytes.fromhex("5381C8")
    assert tlv.encode(0x70, iter([b"\x01\x00", b"\x02\x00"])) == bytes.fromhex("700401000200")


def test_decode_multi_byte_tags_and_long_lengths() -> None:
    items = tlv.decode(bytes.fromhex("5FC10503AABBCC 7F49820100".replace(" ", "")) + bytes(0x100))
    assert [item.tag for item in items] == [0x5FC105, 0x7F49]
    assert items[0].value == b"\xaa\xbb\xcc"
    assert items[1].value == bytes(0x100)
    # a four-byte tag (the longest accepted) and a non-minimal four-byte length
    item = tlv.decode_one(bytes.fromhex("DF81820184000000024142"))
    assert (item.tag, item.value) == (0xDF818201, b"AB")


def test_constructed_flag() -> None:
    assert tlv.is_constructed(0x7C)
    assert tlv.is_constructed(0x7F49)
    assert not tlv.is_constructed(0x5FC105)
    assert not tlv.is_constructed(0x53)
    assert tlv.TLV(0x70, b"").constructed
    assert not tlv.TLV(0x80, b"").constructed


# ---- strict decoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_hex",
    [
        "53",  # tag, no length
        "5F",  # multi-byte tag cut after the first byte
        "5FC1",  # multi-byte tag cut in a continuation
        "DF8182830100",  # five-byte tag (with a valid empty length after it)
        "5303AABB",  # value shorter than the length
        "538101",  # long form, value missing
        "5381",  # long form, length byte missing
        "538200",  # two-byte length cut
        "5380",  # indefinite length
        "538500000000FF",  # five length bytes
        "5301AA53",  # good element then a truncated one
        "5384FFFFFFFF00",  # huge length
    ],
)
def test_malformed_raises_tlv_error_6a80(raw_hex: str) -> None:
    raw = bytes.fromhex(raw_hex)
    with pytest.raises(tlv.TLVError) as info:
        tlv.decode(raw)
    assert isinstance(info.value, ISOError)
    assert info.value.sw == 0x6A80


def test_indefinite_length_rejected_even_with_data_after_it() -> None:
    with pytest.raises(tlv.TLVError):
        tlv.decode(b"\x53\x80" + bytes(128) + b"\x00\x00")


def test_decode_empty() -> None:
    assert tlv.decode(b"") == []
    assert tlv.to_dict(b"") == {}


def test_decode_one_checks_count_and_tag() -> None:
    assert tlv.decode_one(bytes.fromhex("8001AA"), 0x80).value == b"\xaa"
    for raw in ("", "8001AA8101BB"):
        with pytest.raises(tlv.TLVError):
            tlv.decode_one(bytes.fromhex(raw))
    with pytest.raises(tlv.TLVError):
        tlv.decode_one(bytes.fromhex("8001AA"), 0x81)


def test_to_dict_and_repeated_tag() -> None:
    assert tlv.to_dict(bytes.fromhex("8001AA8100")) == {0x80: b"\xaa", 0x81: b""}
    with pytest.raises(tlv.TLVError):
        tlv.to_dict(bytes.fromhex("8001AA8001BB"))


def test_template_is_exactly_one_tlv_with_the_tag() -> None:
    block = bytes(range(256))
    body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, block)])  # long-form lengths
    assert body[:4] == bytes.fromhex("7C820106")
    assert tlv.template(body, 0x7C) == {0x82: b"", 0x81: block}
    assert tlv.template(bytes.fromhex("AC03800111"), 0xAC) == {0x80: b"\x11"}
    assert tlv.template(bytes.fromhex("7C00"), 0x7C) == {}
    for raw in (
        "",  # nothing
        "7D00",  # another tag
        "7C007C00",  # two templates
        "7C0080",  # trailing byte
        "7C0380011100",  # trailing element
        "7C06800111800122",  # a repeated child tag
        "7C0380",  # outer length beyond the data
        "7C028005",  # child length beyond the outer value
    ):
        with pytest.raises(tlv.TLVError) as info:
            tlv.template(bytes.fromhex(raw), 0x7C)
        assert info.value.sw == 0x6A80


def test_iter_decode_is_lazy_but_strict() -> None:
    iterator = tlv.iter_decode(bytes.fromhex("8001AA81"))
    assert next(iterator) == tlv.TLV(0x80, b"\xaa")
    with pytest.raises(tlv.TLVError):
        next(iterator)


# ---- find ------------------------------------------------------------------------------


GA_RESPONSE = tlv.encode(
    0x7C,
    [tlv.encode(0x82, b""), tlv.encode(0x81, b"chal"), tlv.encode(0x85, tlv.encode(0x86, b"deep"))],
)


def test_find_paths() -> None:
    assert tlv.find(GA_RESPONSE, 0x7C, 0x81) == b"chal"
    assert tlv.find(GA_RESPONSE, 0x7C, 0x82) == b""  # present and empty is not None
    assert tlv.find(GA_RESPONSE, 0x7C, 0x85, 0x86) == b"deep"
    assert tlv.find(GA_RESPONSE, 0x7C) == GA_RESPONSE[2:]
    assert tlv.find(GA_RESPONSE) == GA_RESPONSE
    assert tlv.find(GA_RESPONSE, 0x7C, 0x83) is None
    assert tlv.find(GA_RESPONSE, 0x81) is None  # not at the top level
    assert tlv.find(b"", 0x80) is None


def test_find_returns_first_match() -> None:
    assert tlv.find(bytes.fromhex("8001AA8001BB"), 0x80) == b"\xaa"


def test_find_in_malformed_raises() -> None:
    with pytest.raises(tlv.TLVError):
        tlv.find(bytes.fromhex("7C03810501"), 0x7C, 0x81)


# ---- property tests ----------------------------------------------------------------------

# Valid tag encodings: one byte whose low five bits are not 11111, or a first byte with
# 11111 followed by 1-3 bytes, every one but the last with bit 8 set.
single_tags = st.integers(0, 255).filter(lambda b: b & 0x1F != 0x1F)


@st.composite
def tags(draw: st.DrawFn, constructed: bool | None = None) -> int:
    if draw(st.booleans()):
        first = draw(single_tags)
        encoded = bytes([first])
    else:
        first = (draw(st.integers(0, 7)) << 5) | 0x1F
        middle = draw(st.lists(st.integers(0x80, 0xFF), max_size=2))
        encoded = bytes([first, *middle, draw(st.integers(0, 0x7F))])
    if constructed is not None:
        encoded = bytes([(encoded[0] & ~0x20) | (0x20 if constructed else 0)]) + encoded[1:]
    return int.from_bytes(encoded, "big")


@dataclass(frozen=True)
class Node:
    tag: int
    value: bytes | tuple[Node, ...]

    def encode(self) -> bytes:
        if isinstance(self.value, bytes):
            return tlv.encode(self.tag, self.value)
        return tlv.encode(self.tag, [child.encode() for child in self.value])


leaves = st.builds(Node, tags(constructed=False), st.binary(max_size=300))
trees = st.recursive(
    leaves,
    lambda children: st.builds(Node, tags(constructed=True), st.lists(children, max_size=4).map(tuple)),
    max_leaves=12,
)


def rebuild(item: tlv.TLV) -> Node:
    if item.constructed:
        return Node(item.tag, tuple(rebuild(child) for child in item.children()))
    return Node(item.tag, item.value)


@given(st.lists(trees, max_size=4))
def test_nested_round_trip(forest: list[Node]) -> None:
    raw = b"".join(node.encode() for node in forest)
    decoded = tlv.decode(raw)
    assert [rebuild(item) for item in decoded] == forest
    assert b"".join(item.encode() for item in decoded) == raw


@given(tags(), st.binary(max_size=70000))
def test_single_round_trip_and_length_form(tag: int, value: bytes) -> None:
    raw = tlv.encode(tag, value)
    item = tlv.decode_one(raw)
    assert (item.tag, item.value) == (tag, value)
    header = len(raw) - len(value)
    length_bytes = 1 if len(value) < 0x80 else 2 if len(value) < 0x100 else 3 if len(value) < 0x10000 else 4
    assert header == len(tlv.tag_bytes(tag)) + length_bytes


@given(st.lists(trees, min_size=1, max_size=3), st.data())
def test_truncated_input_raises(forest: list[Node], data: st.DataObject) -> None:
    raw = b"".join(node.encode() for node in forest)
    cut = data.draw(st.integers(0, len(raw) - 1))
    boundaries = {0}
    position = 0
    for node in forest:
        position += len(node.encode())
        boundaries.add(position)
    if cut in boundaries:
        assert len(tlv.decode(raw[:cut])) == sorted(boundaries).index(cut)
    else:
        with pytest.raises(tlv.TLVError):
            tlv.decode(raw[:cut])


@given(tags(constructed=True), st.dictionaries(tags(), st.binary(max_size=300), max_size=4))
def test_template_round_trip(tag: int, children: dict[int, bytes]) -> None:
    raw = tlv.encode(tag, [tlv.encode(child, value) for child, value in children.items()])
    assert tlv.template(raw, tag) == children


@given(tags(), st.binary(max_size=100), st.integers(1, 1000))
def test_length_claiming_more_than_present_raises(tag: int, value: bytes, extra: int) -> None:
    raw = tlv.tag_bytes(tag) + tlv.encode_length(len(value) + extra) + value
    with pytest.raises(tlv.TLVError):
        tlv.decode(raw)


@given(st.binary(max_size=300))
def test_decode_any_bytes_is_list_or_tlv_error(raw: bytes) -> None:
    try:
        items = tlv.decode(raw)
    except tlv.TLVError as error:
        assert error.sw == 0x6A80
    else:
        # whatever decodes re-encodes to at most the input (long forms may be non-minimal)
        assert len(b"".join(item.encode() for item in items)) <= len(raw)
