"""Codecs of the minidriver tables a GIDS card stores as data objects.

The card itself never interprets these tables (it stores exactly what the host
PUTs and repairs nothing, as GidsApplet does); the GIDS applet uses the codecs to
provision an initialised card and the host (minidriver.backends.gids) to read
and write the tables, so both sides share this one definition of the layouts.
All layouts are little-endian C structures:

- masterfile (A000/DF1F): version byte 01, then 28-byte records
  `directory[9] filename[9] pad[2] u32 DO u32 FID`;
- keymap (A000/DF20): version byte 01, then 12-byte records
  `u32 state, u8 algid, u8 keytype, u16 keyref, u16 FFFF, u16 0000`;
- cmapfile (A010/DF23): 86-byte CONTAINER_MAP_RECORDs
  `WCHAR guid[40], u8 flags, u8 reserved, u16 sig bits, u16 kx bits`;
- cardcf (A010/DF22): `u8 version, u8 pins freshness, u16 containers, u16 files`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

TABLE_VERSION = 0x01

_MF_RECORD = struct.Struct("<9s9s2xII")
_KEYMAP_RECORD = struct.Struct("<IBBHHH")
_CMAP_RECORD = struct.Struct("<80sBBHH")
_CARDCF = struct.Struct("<BBHH")

MASTERFILE_RECORD_SIZE = _MF_RECORD.size  # 28
KEYMAP_RECORD_SIZE = _KEYMAP_RECORD.size  # 12
CMAP_RECORD_SIZE = _CMAP_RECORD.size  # 86

KEYTYPE_EXCHANGE = 0x9A  # AT_KEYEXCHANGE
KEYTYPE_SIGNATURE = 0x9C  # AT_SIGNATURE
CMAP_VALID = 0x01
CMAP_DEFAULT = 0x02
CERT_COMPRESSED = b"\x01\x00"


class TableError(ValueError):
    """A table whose bytes do not have the documented layout."""


def _name(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")


def _raw_name(text: str) -> bytes:
    data = text.encode("ascii")
    if len(data) > 8:
        raise TableError(f"name {text!r} longer than 8 characters")
    return data.ljust(9, b"\x00")


@dataclass(frozen=True)
class MasterFileEntry:
    directory: str
    filename: str
    do: int
    fid: int

    @property
    def is_directory(self) -> bool:
        return not self.filename


def decode_masterfile(data: bytes) -> list[MasterFileEntry]:
    if not data or data[0] != TABLE_VERSION or (len(data) - 1) % MASTERFILE_RECORD_SIZE:
        raise TableError("masterfile: version 01 followed by 28-byte records expected")
    return [
        MasterFileEntry(_name(directory), _name(filename), do, fid)
        for directory, filename, do, fid in _MF_RECORD.iter_unpack(data[1:])
    ]


def encode_masterfile(entries: list[MasterFileEntry]) -> bytes:
    return bytes([TABLE_VERSION]) + b"".join(
        _MF_RECORD.pack(_raw_name(e.directory), _raw_name(e.filename), e.do, e.fid) for e in entries
    )


FRESH_MASTERFILE_ENTRIES = [
    MasterFileEntry("mscp", "", 0, 0xA000),
    MasterFileEntry("", "cardid", 0xDF20, 0xA012),
    MasterFileEntry("", "cardapps", 0xDF21, 0xA010),
    MasterFileEntry("", "cardcf", 0xDF22, 0xA010),
    MasterFileEntry("mscp", "cmapfile", 0xDF23, 0xA010),
]
"""The masterfile `gids-tool --initialize` writes (141 bytes)."""


@dataclass(frozen=True)
class KeyMapRecord:
    state: int
    algid: int
    keytype: int
    keyref: int
    reserved_ffff: int = 0xFFFF
    reserved_zero: int = 0


def decode_keymap(data: bytes) -> list[KeyMapRecord]:
    if not data or data[0] != TABLE_VERSION or (len(data) - 1) % KEYMAP_RECORD_SIZE:
        raise TableError("keymap: version 01 followed by 12-byte records expected")
    return [KeyMapRecord(*fields) for fields in _KEYMAP_RECORD.iter_unpack(data[1:])]


def encode_keymap(records: list[KeyMapRecord]) -> bytes:
    return bytes([TABLE_VERSION]) + b"".join(
        _KEYMAP_RECORD.pack(r.state, r.algid, r.keytype, r.keyref, r.reserved_ffff, r.reserved_zero)
        for r in records
    )


@dataclass(frozen=True)
class ContainerRecord:
    guid: str
    flags: int
    sig_bits: int
    kx_bits: int
    reserved: int = 0

    @property
    def valid(self) -> bool:
        return bool(self.flags & CMAP_VALID)


def decode_cmapfile(data: bytes) -> list[ContainerRecord]:
    if len(data) % CMAP_RECORD_SIZE:
        raise TableError("cmapfile: a whole number of 86-byte records expected")
    records = []
    for guid, flags, reserved, sig, kx in _CMAP_RECORD.iter_unpack(data):
        text = guid.decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        records.append(ContainerRecord(text, flags, sig, kx, reserved))
    return records


def encode_cmapfile(records: list[ContainerRecord]) -> bytes:
    out = b""
    for r in records:
        guid = r.guid.encode("utf-16-le")
        if len(guid) > 78:
            raise TableError("container name longer than 39 characters")
        out += _CMAP_RECORD.pack(guid.ljust(80, b"\x00"), r.flags, r.reserved, r.sig_bits, r.kx_bits)
    return out


@dataclass(frozen=True)
class CardCF:
    version: int = 0
    pins_freshness: int = 0
    containers_freshness: int = 0
    files_freshness: int = 0


def decode_cardcf(data: bytes) -> CardCF:
    if len(data) != _CARDCF.size:
        raise TableError("cardcf: 6 bytes expected")
    return CardCF(*_CARDCF.unpack(data))


def encode_cardcf(value: CardCF) -> bytes:
    return _CARDCF.pack(
        value.version,
        value.pins_freshness,
        value.containers_freshness & 0xFFFF,
        value.files_freshness & 0xFFFF,
    )


def compress_certificate(der: bytes) -> bytes:
    """The minidriver compressed-file form: 01 00, uncompressed length (LE u16), zlib stream."""
    if len(der) > 0xFFFF:
        raise TableError("certificate longer than 65535 bytes")
    return CERT_COMPRESSED + len(der).to_bytes(2, "little") + zlib.compress(der)


def decompress_certificate(data: bytes) -> bytes:
    """Inverse of `compress_certificate`; inflates at most one byte past the header's length (no zip bomb)."""
    if len(data) < 4 or data[:2] != CERT_COMPRESSED:
        raise TableError("not a compressed minidriver file (01 00 header expected)")
    length = int.from_bytes(data[2:4], "little")
    inflater = zlib.decompressobj()
    try:
        der = inflater.decompress(data[4:], length + 1)
    except zlib.error as error:
        raise TableError(f"bad zlib stream: {error}") from None
    if len(der) != length or not inflater.eof:
        raise TableError("uncompressed length does not match the header")
    return der
