"""CARD_DATA and the context (minidriver spec §1: versions, CardAcquireContext, CardDeleteContext),
what every entry point checks first, and the secure key injection entry points (§6)."""

from __future__ import annotations

import pytest
from md_support import PIN, Card, raises

import minidriver as md
from minidriver.cache import GlobalCache

INVALID = md.SCARD_E_INVALID_PARAMETER
UNSUPPORTED = md.SCARD_E_UNSUPPORTED_FEATURE


def _fresh(piv: Card, **kwargs: object) -> md.CardData:
    """A CARD_DATA whose context is not acquired yet."""
    kwargs.setdefault("cache", GlobalCache())
    return md.CardData.inprocess(piv.virtual.card, **kwargs)


def test_acquire_context_checks_card_data(piv: Card) -> None:
    raises(INVALID, lambda: md.CardAcquireContext("not a CARD_DATA", 0))  # type: ignore[arg-type]
    raises(INVALID, lambda: md.CardAcquireContext(_fresh(piv), 0x2))
    # no-card mode exists only for secure key injection, which is not implemented (as in OpenSC)
    raises(UNSUPPORTED, lambda: md.CardAcquireContext(_fresh(piv), md.CARD_SECURE_KEY_INJECTION_NO_CARD_MODE))
    for field, value in (("pbAtr", b""), ("pwszCardName", "")):
        card_data = _fresh(piv)
        setattr(card_data, field, value)
        raises(INVALID, lambda c=card_data: md.CardAcquireContext(c, 0))
    for atr in (b"\x3b", b"\x00\x11\x22", bytes(0x23)):
        card_data = _fresh(piv)
        card_data.pbAtr = atr
        raises(md.SCARD_E_UNKNOWN_CARD, lambda c=card_data: md.CardAcquireContext(c, 0))
    handleless = md.CardData(pbAtr=piv.virtual.card.atr)
    raises(md.SCARD_E_INVALID_HANDLE, lambda: md.CardAcquireContext(handleless, 0))
    raises(md.SCARD_E_INVALID_HANDLE, lambda: handleless.connection)
    with pytest.raises(md.ScardError) as no_transaction, handleless.transaction():
        pass
    assert no_transaction.value.code == md.SCARD_E_INVALID_HANDLE


def test_acquire_context_recognises_the_application(piv: Card) -> None:
    forced = _fresh(piv, applet="piv")
    md.CardAcquireContext(forced, 0)
    assert forced.pvVendorSpecific is not None and forced.pvVendorSpecific.backend.name == "piv"
    wrong = _fresh(piv, applet="gids")  # the PIV card has no GIDS application
    raises(md.SCARD_E_UNKNOWN_CARD, lambda: md.CardAcquireContext(wrong, 0))
    assert wrong.pvVendorSpecific is None


def test_versions_are_negotiated_and_gate_the_entry_points(piv: Card) -> None:
    newer = _fresh(piv)
    newer.dwVersion = 9
    md.CardAcquireContext(newer, 0)
    assert newer.dwVersion == md.CARD_DATA_CURRENT_VERSION
    older = _fresh(piv)
    older.dwVersion = md.MINIMUM_SUPPORTED_VERSION - 1
    raises(md.ERROR_REVISION_MISMATCH, lambda: md.CardAcquireContext(older, 0))
    v4 = _fresh(piv)
    v4.dwVersion = 4
    md.CardAcquireContext(v4, 0)
    assert v4.dwVersion == 4
    md.CardReadFile(v4, "mscp", "cmapfile")  # a v4 entry point works
    raises(UNSUPPORTED, lambda: md.CardAuthenticateEx(v4, md.ROLE_USER, 0, PIN))  # v6
    raises(UNSUPPORTED, lambda: md.CardDeriveKey(v4, md.CARD_DERIVE_KEY()))  # v5


def test_every_entry_point_needs_an_acquired_context(piv: Card) -> None:
    card_data = _fresh(piv)
    raises(md.SCARD_E_INVALID_HANDLE, lambda: md.CardReadFile(card_data, None, "cardid"))
    raises(md.SCARD_E_INVALID_HANDLE, lambda: md.CardDeleteContext(card_data))
    raises(md.SCARD_E_INVALID_HANDLE, lambda: md.CardSetProperty(card_data, md.CP_PARENT_WINDOW, bytes(8)))
    raises(INVALID, lambda: md.CardReadFile(None, None, "cardid"))  # type: ignore[arg-type]
    raises(INVALID, lambda: md.CardDeleteContext(None))  # type: ignore[arg-type]
    md.CardAcquireContext(card_data, 0)
    assert md.CardReadFile(card_data, None, "cardid")
    md.CardDeleteContext(card_data)
    assert card_data.pvVendorSpecific is None
    raises(md.SCARD_E_INVALID_HANDLE, lambda: md.CardReadFile(card_data, None, "cardid"))


def test_without_the_csp_cache_the_layer_reads_the_same_data(piv: Card) -> None:
    """CARD_DATA without the pfnCspCache* callbacks (cache None): nothing is cached, nothing differs."""
    uncached = _fresh(piv, cache=None)
    md.CardAcquireContext(uncached, 0)
    cached = piv.card_data()
    for directory, name in (("mscp", "cmapfile"), ("mscp", "kxc00"), (None, "cardcf"), (None, "cardid")):
        assert md.CardReadFile(uncached, directory, name) == md.CardReadFile(cached, directory, name)
    assert md.CardEnumFiles(uncached, "mscp") == md.CardEnumFiles(cached, "mscp")
    assert md.CardGetContainerInfo(uncached, 0) == md.CardGetContainerInfo(cached, 0)


SKI_CALLS = {
    "CardGetSharedKeyHandle": lambda cd: md.CardGetSharedKeyHandle(cd, b"\x01"),
    "CardImportSessionKey": lambda cd: md.CardImportSessionKey(cd, 0, None, "", md.CARD_AES_ALGORITHM, b""),
    "CardGetAlgorithmProperty": lambda cd: md.CardGetAlgorithmProperty(
        cd, md.CARD_AES_ALGORITHM, "BlockLength"
    ),
    "CardGetKeyProperty": lambda cd: md.CardGetKeyProperty(cd, 1, md.CKP_BLOCK_LENGTH),
    "CardSetKeyProperty": lambda cd: md.CardSetKeyProperty(cd, 1, md.CKP_CHAINING_MODE, b""),
    "CardDestroyKey": lambda cd: md.CardDestroyKey(cd, 1),
    "CardProcessEncryptedData": lambda cd: md.CardProcessEncryptedData(cd, 1, md.CSF_AUTHENTICATE, [b""], 16),
    "MDImportSessionKey": lambda cd: md.MDImportSessionKey(cd, "", md.CARD_AES_ALGORITHM, b""),
    "MDEncryptData": lambda cd: md.MDEncryptData(cd, 1, md.CSF_AUTHENTICATE, b""),
}


@pytest.mark.parametrize("name", sorted(SKI_CALLS))
def test_secure_key_injection_is_unsupported(piv: Card, name: str) -> None:
    call = SKI_CALLS[name]
    error = raises(UNSUPPORTED, lambda: call(piv.card_data()))
    assert "not implemented" in str(error)
    v6 = _fresh(piv)
    v6.dwVersion = 6
    md.CardAcquireContext(v6, 0)
    error = raises(UNSUPPORTED, lambda: call(v6))
    assert "version 7" in str(error)
    raises(md.SCARD_E_INVALID_HANDLE, lambda: call(_fresh(piv)))
