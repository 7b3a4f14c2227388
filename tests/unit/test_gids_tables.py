"""Minidriver table codecs against byte vectors from OpenSC / Windows traces (gids.md 2.4-2.6)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_gids_support import FRESH_MASTERFILE

from vcard.wire import gids_tables
from vcard.wire.gids_tables import (
    CardCF,
    ContainerRecord,
    KeyMapRecord,
    MasterFileEntry,
    TableError,
)


def test_fresh_masterfile_is_byte_for_byte_opensc_s() -> None:
    assert gids_tables.encode_masterfile(gids_tables.FRESH_MASTERFILE_ENTRIES) == FRESH_MASTERFILE
    assert len(FRESH_MASTERFILE) == 141


def test_masterfile_decodes_and_round_trips() -> None:
    entries = gids_tables.decode_masterfile(FRESH_MASTERFILE)
    assert entries[0] == MasterFileEntry("mscp", "", 0, 0xA000)
    assert entries[0].is_directory
    assert entries[4] == MasterFileEntry("mscp", "cmapfile", 0xDF23, 0xA010)
    assert gids_tables.encode_masterfile(entries) == FRESH_MASTERFILE


def test_masterfile_with_a_certificate_entry() -> None:
    entries = [*gids_tables.FRESH_MASTERFILE_ENTRIES, MasterFileEntry("mscp", "kxc00", 0xDF24, 0xA010)]
    data = gids_tables.encode_masterfile(entries)
    assert data[-28:] == bytes.fromhex(
        "6d7363700000000000 6b78633030000000 00 0000 24df0000 10a00000".replace(" ", "")
    )
    assert gids_tables.decode_masterfile(data) == entries


@pytest.mark.parametrize("bad", [b"", b"\x02" + bytes(28), FRESH_MASTERFILE[:-1]])
def test_masterfile_rejects_bad_layouts(bad: bytes) -> None:
    with pytest.raises(TableError):
        gids_tables.decode_masterfile(bad)


WINDOWS_KEYMAP = bytes.fromhex("01 01000000 07 9A 81B0 FFFF 0000".replace(" ", ""))
"""Keymap after Windows imported a 2048-bit exchange key in container 0 (`DF 20 0D ...`)."""


def test_keymap_vector_from_a_windows_trace() -> None:
    records = gids_tables.decode_keymap(WINDOWS_KEYMAP)
    assert records == [KeyMapRecord(state=1, algid=0x07, keytype=0x9A, keyref=0xB081)]
    assert gids_tables.encode_keymap(records) == WINDOWS_KEYMAP


def test_deleted_keymap_slot_as_opensc_writes_it() -> None:
    deleted = KeyMapRecord(state=0, algid=0, keytype=0, keyref=0xFFFF)
    assert gids_tables.encode_keymap([deleted]) == bytes.fromhex(
        "01 00000000 00 00 FFFF FFFF 0000".replace(" ", "")
    )


def test_cmapfile_record_layout() -> None:
    record = ContainerRecord("Private Key 00", gids_tables.CMAP_VALID | gids_tables.CMAP_DEFAULT, 0, 2048)
    data = gids_tables.encode_cmapfile([record, ContainerRecord("", 0, 0, 0)])
    assert len(data) == 2 * 86
    assert data[:4] == "Pr".encode("utf-16-le")
    assert data[80:86] == bytes.fromhex("03 00 0000 0008".replace(" ", ""))
    assert data[86:] == bytes(86)
    decoded = gids_tables.decode_cmapfile(data)
    assert decoded[0] == record and decoded[0].valid and not decoded[1].valid
    assert gids_tables.encode_cmapfile(decoded) == data
    assert gids_tables.decode_cmapfile(b"") == []
    with pytest.raises(TableError):
        gids_tables.decode_cmapfile(bytes(85))


def test_cardcf() -> None:
    assert gids_tables.encode_cardcf(CardCF()) == bytes(6)
    value = CardCF(0, 1, 0x0102, 0x0304)
    assert gids_tables.encode_cardcf(value) == bytes.fromhex("0001 0201 0403".replace(" ", ""))
    assert gids_tables.decode_cardcf(gids_tables.encode_cardcf(value)) == value


def test_certificate_compression_header() -> None:
    der = bytes(range(256)) * 4
    data = gids_tables.compress_certificate(der)
    assert data[:4] == b"\x01\x00" + len(der).to_bytes(2, "little")
    assert zlib.decompress(data[4:]) == der
    assert gids_tables.decompress_certificate(data) == der
    with pytest.raises(TableError):
        gids_tables.decompress_certificate(der)  # an uncompressed DER is not a minidriver file
    with pytest.raises(TableError):
        gids_tables.decompress_certificate(data[:4] + zlib.compress(der + b"x"))


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=8)


@given(st.lists(st.tuples(names, names, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), max_size=20))
def test_masterfile_round_trip(items: list[tuple[str, str, int, int]]) -> None:
    entries = [MasterFileEntry(*item) for item in items]
    data = gids_tables.encode_masterfile(entries)
    assert len(data) == 1 + 28 * len(entries)
    assert gids_tables.decode_masterfile(data) == entries
    assert gids_tables.encode_masterfile(gids_tables.decode_masterfile(data)) == data


@given(st.binary(max_size=4 * 86).filter(lambda b: len(b) % 86 == 0))
def test_cmapfile_bytes_round_trip_when_names_are_clean(data: bytes) -> None:
    try:
        records = gids_tables.decode_cmapfile(data)
        again = gids_tables.encode_cmapfile(records)
    except (TableError, UnicodeEncodeError):
        return
    assert gids_tables.decode_cmapfile(again) == records
