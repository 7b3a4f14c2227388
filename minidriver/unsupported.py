"""Secure key injection (v7): the entry points exist and answer SCARD_E_UNSUPPORTED_FEATURE.

Smart Card Minidriver Specification v7 §6; a read-only card may leave them unimplemented (§8),
which is also what OpenSC's minidriver does.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .context import CardData, context_of
from .errors import Scard, ScardError

# --- secure key injection (v7): not implemented, as in OpenSC ----------------------------------


def _ski(card_data: CardData, name: str) -> NoReturn:
    context_of(card_data)
    if card_data.dwVersion < 7:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{name} needs CARD_DATA version 7")
    raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{name}: secure key injection is not implemented")


def CardGetSharedKeyHandle(card_data: CardData, pbInput: bytes) -> tuple[bytes, int]:
    _ski(card_data, "CardGetSharedKeyHandle")


def CardImportSessionKey(
    card_data: CardData,
    bContainerIndex: int,
    pPaddingInfo: Any,
    pwszBlobType: str,
    pwszAlgId: str,
    pbInput: bytes,
    dwFlags: int = 0,
) -> int:
    _ski(card_data, "CardImportSessionKey")


def CardGetAlgorithmProperty(
    card_data: CardData, pwszAlgId: str, pwszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    _ski(card_data, "CardGetAlgorithmProperty")


def CardGetKeyProperty(
    card_data: CardData, hKey: int, pwszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    _ski(card_data, "CardGetKeyProperty")


def CardSetKeyProperty(
    card_data: CardData, hKey: int, pwszProperty: str, pbInput: bytes, dwFlags: int = 0
) -> None:
    _ski(card_data, "CardSetKeyProperty")


def CardDestroyKey(card_data: CardData, hKey: int) -> None:
    _ski(card_data, "CardDestroyKey")


def CardProcessEncryptedData(
    card_data: CardData,
    hKey: int,
    pwszSecureFunction: str,
    pEncryptedData: list[bytes],
    cbOutput: int,
    dwFlags: int = 0,
) -> bytes:
    _ski(card_data, "CardProcessEncryptedData")


def MDImportSessionKey(card_data: CardData, pwszBlobType: str, pwszAlgId: str, pbInput: bytes) -> int:
    _ski(card_data, "MDImportSessionKey")


def MDEncryptData(
    card_data: CardData, hKey: int, pwszSecureFunction: str, pbInput: bytes, dwFlags: int = 0
) -> list[bytes]:
    _ski(card_data, "MDEncryptData")
