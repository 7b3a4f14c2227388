"""The logical file system (minidriver spec §4, §1.4 "Directories/files"): names, rules, cardcf."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from md_support import PIN, Card, gids_card, raises

import minidriver as md

INVALID = md.SCARD_E_INVALID_PARAMETER
UNSUPPORTED = md.SCARD_E_UNSUPPORTED_FEATURE
GIDS_SELECT = bytes.fromhex("00A4040C09A0000003974254465900")


@pytest.fixture
def gids() -> Iterator[Card]:
    card = gids_card()
    yield card
    card.virtual.close()


def test_names_are_checked_and_lowercased(piv: Card) -> None:
    cd = piv.card_data()
    assert md.CardReadFile(cd, "MSCP", "CMapFile") == md.CardReadFile(cd, "mscp", "cmapfile")
    assert md.CardReadFile(cd, "", "cardid") == md.CardReadFile(cd, None, "cardid")  # "" is the root
    for directory, name in (
        ("mscp", ""),
        ("mscp", None),
        ("mscp", "ninechars"),
        ("mscp", "kxc\u00e900"),  # not ANSI
        ("mscp", "a/b"),
        ("mscp", "a*"),
        ("ms:p", "cmapfile"),
        ("mscpmscpm", "cmapfile"),
    ):
        raises(INVALID, lambda d=directory, n=name: md.CardReadFile(cd, d, n))


def test_read_only_card_files(piv: Card) -> None:
    cd = piv.card_data()
    assert sorted(md.CardEnumFiles(cd, None)) == ["cardapps", "cardcf", "cardid"]
    assert md.CardReadFile(cd, None, "cardapps") == b"mscp\0\0\0\0"
    info = md.CardGetFileInfo(cd, "mscp", "cmapfile", 0)
    assert info.cbFileSize == len(md.CardReadFile(cd, "mscp", "cmapfile"))
    for code, call in (
        (md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardGetFileInfo(cd, "mscp", "kxc09")),
        (md.ERROR_REVISION_MISMATCH, lambda: md.CardGetFileInfo(cd, "mscp", "cmapfile", 2)),
        (INVALID, lambda: md.CardEnumFiles(cd, "mscp", 1)),
        (md.SCARD_E_DIR_NOT_FOUND, lambda: md.CardEnumFiles(cd, "nodir")),
        (INVALID, lambda: md.CardQueryFreeSpace(cd, 1)),
        (md.ERROR_REVISION_MISMATCH, lambda: md.CardQueryFreeSpace(cd, 0, 2)),
        (UNSUPPORTED, lambda: md.CardCreateDirectory(cd, "apps", 1)),
        (UNSUPPORTED, lambda: md.CardDeleteDirectory(cd, "mscp")),
        (UNSUPPORTED, lambda: md.CardDeleteFile(cd, "mscp", "kxc00")),
        (UNSUPPORTED, lambda: md.CardWriteFile(cd, None, "cardcf", 0, bytes(6))),
        (INVALID, lambda: md.CardDeleteFile(cd, "mscp", "kxc00", 1)),
        (INVALID, lambda: md.CardWriteFile(cd, "mscp", "kxc00", 1, b"")),
    ):
        raises(code, call)


def test_directory_and_file_rules_on_a_writable_card(gids: Card) -> None:
    cd = gids.card_data()
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    for code, call in (
        (INVALID, lambda: md.CardCreateDirectory(cd, "apps", 0)),
        (INVALID, lambda: md.CardCreateDirectory(cd, "apps", 3)),
        (INVALID, lambda: md.CardCreateDirectory(cd, "", 1)),
        (INVALID, lambda: md.CardCreateFile(cd, "mscp", "data", 0, 0)),
        (INVALID, lambda: md.CardCreateFile(cd, "mscp", "data", 0, md.CARD_FILE_ACCESS_CONDITION.UnknownAc)),
        (INVALID, lambda: md.CardCreateFile(cd, "mscp", "data", 0, 7)),
        (md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardDeleteFile(cd, "mscp", "nofile")),
        (md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardGetFileInfo(cd, "mscp", "nofile")),
    ):
        raises(code, call)
    md.CardCreateFile(cd, None, "rootfile", 0, md.CARD_FILE_ACCESS_CONDITION.UserReadWriteAc)
    md.CardWriteFile(cd, None, "rootfile", 0, b"in the root")
    assert "rootfile" in md.CardEnumFiles(cd, None)
    assert md.CardReadFile(cd, None, "rootfile") == b"in the root"
    md.CardDeleteFile(cd, None, "rootfile")
    raises(md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardReadFile(cd, None, "rootfile"))


def test_cardcf_written_through_the_api_is_checked_first(gids: Card) -> None:
    cd = gids.card_data()
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    current = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(cd, None, "cardcf"))
    raises(INVALID, lambda: md.CardWriteFile(cd, None, "cardcf", 0, b"\x01\x02"))
    assert md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(cd, None, "cardcf")) == current  # untouched
    bumped = current.bumped(pins=True, containers=False, files=True)
    with cd.transaction():  # inside one transaction the cache view follows the write
        md.CardWriteFile(cd, None, "cardcf", 0, bumped.pack())
        assert md.CardReadFile(cd, None, "cardcf") == bumped.pack()
    other = gids.card_data()
    assert md.CardReadFile(other, None, "cardcf") == bumped.pack()


def test_an_unreadable_cardcf_is_refused_not_rewritten(gids: Card) -> None:
    card = gids.virtual.card
    for apdu in (GIDS_SELECT, bytes.fromhex("0020008006") + PIN, bytes.fromhex("00DBA01004DF220101")):
        assert card.transmit(apdu)[-2:] == b"\x90\x00"  # a 1-byte cardcf, written behind the layer's back
    cached = gids.card_data()
    error = raises(md.SCARD_E_COMM_DATA_LOST, lambda: md.CardAuthenticateEx(cached, md.ROLE_USER, 0, PIN))
    assert "cardcf" in str(error)  # every cached read starts from cardcf
    uncached = gids.card_data(cache=None)
    md.CardAuthenticateEx(uncached, md.ROLE_USER, 0, PIN)
    assert md.CardReadFile(uncached, "mscp", "cmapfile")  # without a cache the files still read
    raises(md.SCARD_E_COMM_DATA_LOST, lambda: md.CardWriteFile(uncached, "mscp", "cmapfile", 0, b""))
    assert card.transmit(bytes.fromhex("00CBA010045C02DF2200"))[:-2] == bytes.fromhex(
        "DF220101"
    )  # not rewritten
    assert md.CardReadFile(uncached, "mscp", "cmapfile")  # and the write did not happen either
