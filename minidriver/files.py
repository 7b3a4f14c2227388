"""The logical file system: directories, files, enumeration, file info, free space.

Smart Card Minidriver Specification v7 §1.4 (directory/file entry points) and §4 (naming, files,
access conditions, cardcf freshness).
"""

from __future__ import annotations

from .cache import Freshness
from .constants import (
    MAX_FILE_NAME_LEN,
    szBASE_CSP_DIR,
    szCACHE_FILE,
    szCARD_IDENTIFIER_FILE,
    szCONTAINER_MAP_FILE,
)
from .context import CardData, context_of
from .entry import check_flags, check_version, entry
from .errors import Scard, ScardError
from .structures import CARD_CACHE_FILE_FORMAT, CARD_FILE_INFO, CARD_FREE_SPACE_INFO, StructureError


def _name(name: str | None, what: str) -> str:
    """A directory or file name: at most 8 ANSI characters legal in Windows names, lowercased (spec 4.1)."""
    if not name:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{what} is required")
    if not isinstance(name, str) or len(name) > MAX_FILE_NAME_LEN or not name.isascii():
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{what} {name!r}: at most 8 ANSI characters")
    if any(ch in name for ch in '\\/:*?"<>|\0'):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{what} {name!r}: character not allowed")
    return name.lower()


def _directory(name: str | None) -> str | None:
    """pszDirectoryName: None (or "") is the root directory."""
    return _name(name, "pszDirectoryName") if name else None


def _path(directory: str | None, name: str | None) -> tuple[str | None, str]:
    """(pszDirectoryName, pszFileName) checked and normalised."""
    return _directory(directory), _name(name, "pszFileName")


# --- files ------------------------------------------------------------------------------------


def _file_kind(directory: str | None, name: str) -> Freshness:
    return (
        Freshness.CONTAINERS
        if (directory, name) == (szBASE_CSP_DIR, szCONTAINER_MAP_FILE)
        else Freshness.FILES
    )


@entry()
def CardCreateDirectory(card_data: CardData, pszDirectory: str, AccessCondition: int) -> None:
    ctx = context_of(card_data)
    directory = _name(pszDirectory, "pszDirectory")
    if AccessCondition not in (1, 2):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"AccessCondition {AccessCondition}")
    ctx.require_writable()
    ctx.bump(files=True)
    ctx.backend.create_directory(directory, AccessCondition)


@entry()
def CardDeleteDirectory(card_data: CardData, pszDirectory: str) -> None:
    ctx = context_of(card_data)
    directory = _name(pszDirectory, "pszDirectory")
    ctx.require_writable()
    ctx.bump(files=True)
    ctx.backend.delete_directory(directory)


@entry()
def CardCreateFile(
    card_data: CardData,
    pszDirectoryName: str | None,
    pszFileName: str,
    cbInitialCreationSize: int,
    AccessCondition: int,
) -> None:
    ctx = context_of(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    if not 1 <= AccessCondition <= 6 or AccessCondition == 4:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"AccessCondition {AccessCondition}")
    ctx.require_writable()
    ctx.bump(files=True, containers=_file_kind(directory, name) is Freshness.CONTAINERS)
    ctx.backend.create_file(directory, name, cbInitialCreationSize, AccessCondition)


@entry()
def CardReadFile(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwFlags: int = 0
) -> bytes:
    """Whole file. cardid and cardcf are always read from the card, never from the cache."""
    check_flags(dwFlags)
    ctx = context_of(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    if directory is None and name == szCACHE_FILE:
        # Read from the card (never from the data cache); it also starts this transaction's cache
        # view. Within that view it is the value read at its start (nobody else can write cardcf
        # while the transaction lasts; this layer's own writes update the view).
        if card_data.cache is None:
            return ctx.read_cardcf().pack()
        fresh = ctx.freshness(card_data)
        assert fresh is not None
        return fresh.cardcf.pack()
    if directory is None and name == szCARD_IDENTIFIER_FILE:
        return ctx.backend.card_id()
    return ctx.cached(
        card_data,
        _file_kind(directory, name),
        f"Cached_GeneralFile/{directory or ''}/{name}",
        lambda: ctx.backend.read_file(directory, name),
    )


@entry()
def CardWriteFile(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwFlags: int, pbData: bytes
) -> None:
    check_flags(dwFlags)
    ctx = context_of(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    ctx.require_writable()
    if directory is None and name == szCACHE_FILE:
        # Checked before it is written: a cardcf no reader can parse would make every cache
        # (and every later write, which bumps it) fail with SCARD_E_COMM_DATA_LOST.
        try:
            cardcf = CARD_CACHE_FILE_FORMAT.unpack(bytes(pbData))
        except StructureError as error:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"cardcf: {error}") from error
        ctx.backend.write_cardcf(bytes(pbData))
        if ctx.fresh is not None:
            ctx.fresh.cardcf = cardcf
        return
    kind = _file_kind(directory, name)
    ctx.freshness(card_data)
    ctx.bump(files=True, containers=kind is Freshness.CONTAINERS)
    ctx.backend.write_file(directory, name, bytes(pbData))
    if ctx.fresh is not None:
        ctx.fresh.put(f"Cached_GeneralFile/{directory or ''}/{name}", bytes(pbData))


@entry()
def CardDeleteFile(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwFlags: int = 0
) -> None:
    check_flags(dwFlags)
    ctx = context_of(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    ctx.require_writable()
    ctx.bump(files=True, containers=_file_kind(directory, name) is Freshness.CONTAINERS)
    ctx.backend.delete_file(directory, name)


@entry()
def CardEnumFiles(card_data: CardData, pszDirectoryName: str | None, dwFlags: int = 0) -> list[str]:
    """File names of a directory (the C multi-string as a list); empty directory is FILE_NOT_FOUND."""
    check_flags(dwFlags)
    ctx = context_of(card_data)
    directory = _directory(pszDirectoryName)
    raw = ctx.cached(
        card_data,
        Freshness.FILES,
        f"Cached_EnumFiles/{directory or ''}",
        lambda: "\0".join(ctx.backend.enum_files(directory)).encode("ascii"),
    )
    names = [name for name in raw.decode("ascii").split("\0") if name]
    if not names:
        raise ScardError(Scard.E_FILE_NOT_FOUND, f"directory {directory or '(root)'} is empty")
    return names


@entry()
def CardGetFileInfo(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwVersion: int = 1
) -> CARD_FILE_INFO:
    check_version(dwVersion, 1)
    ctx = context_of(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    raw = ctx.cached(
        card_data,
        _file_kind(directory, name),
        f"Cached_FileInfo/{directory or ''}/{name}",
        lambda: ctx.backend.file_info(directory, name).pack(),
    )
    return CARD_FILE_INFO.unpack(raw)


@entry()
def CardQueryFreeSpace(card_data: CardData, dwFlags: int = 0, dwVersion: int = 1) -> CARD_FREE_SPACE_INFO:
    check_flags(dwFlags)
    check_version(dwVersion, 1)
    return context_of(card_data).backend.free_space()
