"""BER-TLV (ISO 7816-4 / X.690 subset) encoding and strict decoding.

The only TLV codec in the project. Tags are ints holding their encoded bytes
(0x5C, 0x7F49, 0x5FC105), lengths use the definite short or long form (up to
four length bytes). Decoding is strict: every length is checked against the
buffer, and a malformed encoding raises TLVError, which card code turns into
6A80 (incorrect data).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .apdu import SW, ISOError


class TLVError(ISOError):
    """Malformed TLV: answered as 6A80 when it escapes an applet."""

    def __init__(self, message: str) -> None:
        super().__init__(SW.INCORRECT_DATA, message)


def tag_bytes(tag: int) -> bytes:
    if tag < 0:
        raise ValueError("negative tag")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode_length(length: int) -> bytes:
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > 4:
        raise ValueError("length too large")
    return bytes([0x80 | len(body)]) + body


_BYTES_TYPES = (bytes, bytearray)


def encode(tag: int, value: bytes | Iterable[bytes]) -> bytes:
    """One TLV; `value` may be bytes or an iterable of already-encoded children.

    One-byte tags with lengths below 64 KiB (signatures, certificates) are encoded
    inline; other tags and lengths go through tag_bytes / encode_length.
    """
    if type(value) is bytes:
        body = value
    else:
        body = bytes(value) if isinstance(value, _BYTES_TYPES) else b"".join(value)
    length = len(body)
    if 0 <= tag < 0x100:
        if length < 0x80:
            return bytes((tag, length)) + body
        if length < 0x100:
            return bytes((tag, 0x81, length)) + body
        if length < 0x10000:
            return bytes((tag, 0x82, length >> 8, length & 0xFF)) + body
    return tag_bytes(tag) + encode_length(length) + body


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & 0x20)


class TLV(NamedTuple):
    """One decoded element (a NamedTuple: cheap to build on the per-APDU path)."""

    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def children(self) -> list[TLV]:
        return decode(self.value)

    def encode(self) -> bytes:
        return encode(self.tag, self.value)


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("truncated tag")
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TLVError("truncated multi-byte tag")
            if pos - start >= 4:
                raise TLVError("tag longer than 4 bytes")
            byte = data[pos]
            pos += 1
            if not byte & 0x80:
                break
    return int.from_bytes(data[start:pos], "big"), pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("truncated length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 4:
        raise TLVError(f"unsupported length form 0x{first:02X}")
    if pos + count > len(data):
        raise TLVError("truncated long-form length")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def _element(data: bytes, pos: int) -> tuple[int, int, int]:
    """Tag, value start and value end of the element at `pos`, every bound checked.

    Single-byte tags with short-form lengths (most of what cards exchange) take
    the fast path; everything else goes through the general readers.
    """
    end = len(data)
    if pos + 1 < end and data[pos] & 0x1F != 0x1F:
        tag = data[pos]
        start = pos + 2
        length = data[pos + 1]
        if length >= 0x80:
            length, start = _read_length(data, pos + 1)
    else:
        tag, pos = _read_tag(data, pos)
        length, start = _read_length(data, pos)
    if start + length > end:
        raise TLVError(f"tag {tag:X} claims {length} bytes, {end - start} remain")
    return tag, start, start + length


def iter_decode(data: bytes) -> Iterator[TLV]:
    """Yield top-level TLVs; raises TLVError on any malformed or overlong element."""
    data = bytes(data)
    pos = 0
    while pos < len(data):
        tag, start, pos = _element(data, pos)
        yield TLV(tag, data[start:pos])


def decode(data: bytes) -> list[TLV]:
    """All top-level TLVs (strict, like iter_decode, without the generator's cost)."""
    data = bytes(data)
    items = []
    pos = 0
    while pos < len(data):
        tag, start, pos = _element(data, pos)
        items.append(TLV(tag, data[start:pos]))
    return items


def decode_one(data: bytes, expected_tag: int | None = None) -> TLV:
    """Exactly one TLV filling `data`, optionally with a required tag."""
    items = decode(data)
    if len(items) != 1:
        raise TLVError(f"expected one TLV, found {len(items)}")
    if expected_tag is not None and items[0].tag != expected_tag:
        raise TLVError(f"expected tag {expected_tag:X}, found {items[0].tag:X}")
    return items[0]


def find(data: bytes, *path: int) -> bytes | None:
    """Value at a tag path (each step searched among the previous value's children), or None."""
    value = bytes(data)
    for step in path:
        for item in iter_decode(value):
            if item.tag == step:
                value = item.value
                break
        else:
            return None
    return value


def template(data: bytes, tag: int) -> dict[int, bytes]:
    """The children of a template: `data` must be exactly one TLV with `tag`; children as by to_dict.

    What command handlers parse per call (PIV `7C` of GENERAL AUTHENTICATE, `AC` of
    GENERATE): one strict pass over the outer element, then its value.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size > 1 and data[0] == tag and tag & 0x1F != 0x1F and data[1] < 0x80:
        pos, end = 2, 2 + data[1]  # one-byte tag, short length: _element's fast path inline
    elif size:
        found, pos, end = _element(data, 0)
        if found != tag:
            raise TLVError(f"expected one {tag:X} template")
    else:
        raise TLVError(f"expected one {tag:X} template")
    if end != size:
        raise TLVError(f"expected one {tag:X} template")
    # The value ends where the data does, so _element's bounds are the value's bounds.
    return _elements(data, pos, end)


def _elements(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    """The TLVs from `pos` to `end` (= len(data)) by tag; a repeated tag raises TLVError."""
    elements: dict[int, bytes] = {}
    while pos < end:
        tag = data[pos]
        # _element's fast path inline (one-byte tag, short length): the common element costs no call
        if pos + 1 < end and tag & 0x1F != 0x1F and data[pos + 1] < 0x80:
            start = pos + 2
            pos = start + data[pos + 1]
            if pos > end:
                raise TLVError(f"tag {tag:X} claims {pos - start} bytes, {end - start} remain")
        else:
            tag, start, pos = _element(data, pos)
        if tag in elements:
            raise TLVError(f"tag {tag:X} repeated")
        elements[tag] = data[start:pos]
    return elements


def to_dict(data: bytes) -> dict[int, bytes]:
    """Top-level TLVs as a dict; a repeated tag raises TLVError (templates we parse forbid it)."""
    if type(data) is not bytes:
        data = bytes(data)
    return _elements(data, 0, len(data))
