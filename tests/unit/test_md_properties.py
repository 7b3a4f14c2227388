"""Card and container properties (minidriver spec §3): values, dwFlags rules, buffer sizes, Set rules."""

from __future__ import annotations

import pytest
from md_support import PIN, Card, raises

import minidriver as md
from minidriver.cache import GlobalCache

INVALID = md.SCARD_E_INVALID_PARAMETER
UNSUPPORTED = md.SCARD_E_UNSUPPORTED_FEATURE


def _property(card_data: md.CardData, name: str, flags: int = 0) -> int:
    return md.dword(md.CardGetProperty(card_data, name, None, flags))


def test_card_properties_agree_with_the_entry_points(piv: Card) -> None:
    cd = piv.card_data()
    free = md.CARD_FREE_SPACE_INFO.unpack(md.CardGetProperty(cd, md.CP_CARD_FREE_SPACE))
    assert free == md.CardQueryFreeSpace(cd)
    assert md.CARD_CAPABILITIES.unpack(
        md.CardGetProperty(cd, md.CP_CARD_CAPABILITIES)
    ) == md.CardQueryCapabilities(cd)
    sizes = md.CARD_KEY_SIZES.unpack(md.CardGetProperty(cd, md.CP_CARD_KEYSIZES, None, md.AT_ECDSA_P384))
    assert sizes == md.CardQueryKeySizes(cd, md.AT_ECDSA_P384)
    assert md.CardGetProperty(cd, md.CP_CARD_GUID) == md.CardReadFile(cd, None, "cardid")
    assert md.CardGetProperty(cd, md.CP_CARD_SERIAL_NO)
    assert _property(cd, md.CP_CARD_CACHE_MODE) == md.CP_CACHE_MODE_GLOBAL_CACHE
    # a read-only card: CP_SUPPORTS_WIN_X509_ENROLLMENT must be FALSE (spec §8)
    assert (_property(cd, md.CP_CARD_READ_ONLY), _property(cd, md.CP_SUPPORTS_WIN_X509_ENROLLMENT)) == (1, 0)
    assert _property(cd, md.CP_CARD_LIST_PINS) & md.CREATE_PIN_SET(md.ROLE_USER)
    assert _property(cd, md.CP_KEY_IMPORT_SUPPORT) == 0  # no secure key injection


def test_get_property_rules(piv: Card) -> None:
    cd = piv.card_data()
    for code, call in (
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_CARD_FREE_SPACE, None, 1)),  # dwFlags must be 0
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_CARD_KEYSIZES, None, 0)),  # dwFlags is the key spec
        (
            INVALID,
            lambda: md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, None, md.MAX_PINS),
        ),  # dwFlags is a PIN id
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_CARD_PIN_STRENGTH_VERIFY, None, 5)),  # no such role
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_PARENT_WINDOW)),  # write-only
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_PIN_CONTEXT_STRING)),
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_PADDING_SCHEMES)),  # secure key injection
        (INVALID, lambda: md.CardGetProperty(cd, md.CP_CHAINING_MODES)),
        (INVALID, lambda: md.CardGetProperty(cd, "No Such Property")),
    ):
        raises(code, call)


def test_a_buffer_too_small_says_how_much_is_needed(piv: Card) -> None:
    cd = piv.card_data()
    error = raises(
        md.ERROR_INSUFFICIENT_BUFFER, lambda: md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, 35, md.ROLE_USER)
    )
    assert error.needed == 36  # type: ignore[attr-defined]
    error = raises(md.ERROR_INSUFFICIENT_BUFFER, lambda: md.CardGetProperty(cd, md.CP_CARD_GUID, 15))
    assert error.needed == 16  # type: ignore[attr-defined]
    assert len(md.CardGetProperty(cd, md.CP_CARD_GUID, 16)) == 16


def test_pin_properties(piv: Card) -> None:
    cd = piv.card_data()
    everyone = md.PIN_INFO.unpack(md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, None, md.ROLE_EVERYONE))
    assert everyone.PinCachePolicy.PinCachePolicyType == md.PinCachePolicyType.PinCacheNone
    user = md.PIN_INFO.unpack(md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, None, md.ROLE_USER))
    assert (user.dwVersion, user.PinType) == (md.PIN_INFO_CURRENT_VERSION, md.PinType.AlphaNumericPinType)
    assert user.dwUnblockPermission  # another role (the PUK) can unblock the PIN
    verify = _property(cd, md.CP_CARD_PIN_STRENGTH_VERIFY, md.ROLE_USER)
    assert verify & md.CARD_PIN_STRENGTH_PLAINTEXT
    # a new value for the admin's challenge-response key cannot be typed in
    assert _property(cd, md.CP_CARD_PIN_STRENGTH_CHANGE, md.ROLE_ADMIN) == 0
    assert _property(cd, md.CP_CARD_PIN_STRENGTH_UNBLOCK, md.ROLE_USER) == md.CARD_PIN_STRENGTH_PLAINTEXT


def test_v7_properties_are_unknown_to_a_v6_caller(piv: Card) -> None:
    card_data = md.CardData.inprocess(piv.virtual.card, cache=GlobalCache())
    card_data.dwVersion = 6
    md.CardAcquireContext(card_data, 0)
    raises(INVALID, lambda: md.CardGetProperty(card_data, md.CP_KEY_IMPORT_SUPPORT))
    raises(INVALID, lambda: md.CardGetContainerProperty(card_data, 1, md.CCP_ASSOCIATED_ECDH_KEY))
    five = md.CardData.inprocess(piv.virtual.card, cache=GlobalCache())
    five.dwVersion = 5
    md.CardAcquireContext(five, 0)
    for call in (
        lambda: md.CardGetProperty(five, md.CP_CARD_GUID),
        lambda: md.CardSetProperty(five, md.CP_PARENT_WINDOW, bytes(8)),
        lambda: md.CardGetContainerProperty(five, 0, md.CCP_PIN_IDENTIFIER),
        lambda: md.CardSetContainerProperty(five, 0, md.CCP_PIN_IDENTIFIER, bytes(4)),
    ):
        raises(UNSUPPORTED, call)


def test_set_property_accepts_only_the_window_and_the_context_string(piv: Card) -> None:
    cd = piv.card_data()
    md.CardSetProperty(cd, md.CP_PARENT_WINDOW, (0x1234).to_bytes(8, "little"))
    md.CardSetProperty(cd, md.CP_PIN_CONTEXT_STRING, "Sign in to Contoso\0".encode("utf-16-le"))
    ctx = cd.pvVendorSpecific
    assert ctx is not None and (ctx.parent_window, ctx.pin_context) == (0x1234, "Sign in to Contoso")
    md.CardSetProperty(cd, md.CP_PARENT_WINDOW, (0x5678).to_bytes(4, "little"))  # a 32-bit HWND
    assert ctx.parent_window == 0x5678
    raises(INVALID, lambda: md.CardSetProperty(cd, md.CP_PARENT_WINDOW, b"\x01\x02\x03"))
    raises(INVALID, lambda: md.CardSetProperty(cd, md.CP_PARENT_WINDOW, bytes(8), 1))
    for name in (md.CP_CARD_READ_ONLY, md.CP_CARD_PIN_INFO, md.CP_CARD_CACHE_MODE, md.CP_KEY_IMPORT_SUPPORT):
        raises(UNSUPPORTED, lambda n=name: md.CardSetProperty(cd, n, bytes(4)))
    raises(UNSUPPORTED, lambda: md.CardSetProperty(cd, "No Such Property", b""))
    assert ctx.parent_window == 0x5678  # the refused calls changed nothing


def test_container_properties(piv: Card, gids: Card) -> None:
    cd = piv.card_data()
    packed = md.CardGetContainerProperty(cd, 0, md.CCP_CONTAINER_INFO)
    info = md.CardGetContainerInfo(cd, 0)
    assert packed == info.pack()  # the C image: sizes, and pointer slots the caller fills
    header, _pointers = md.CONTAINER_INFO.unpack(packed)
    assert (header.cbSigPublicKey, header.cbKeyExPublicKey) == (0, len(info.pbKeyExPublicKey)) != (0, 0)
    assert md.dword(md.CardGetContainerProperty(cd, 3, md.CCP_PIN_IDENTIFIER)) == md.ROLE_EVERYONE
    for code, call in (
        (INVALID, lambda: md.CardGetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER, None, 1)),
        (INVALID, lambda: md.CardGetContainerProperty(cd, 0, "No Such Property")),
        (INVALID, lambda: md.CardGetContainerProperty(cd, 1, md.CCP_ASSOCIATED_ECDH_KEY)),  # none associated
        (md.SCARD_E_NO_KEY_CONTAINER, lambda: md.CardGetContainerProperty(cd, 9, md.CCP_PIN_IDENTIFIER)),
        (md.ERROR_INSUFFICIENT_BUFFER, lambda: md.CardGetContainerProperty(cd, 0, md.CCP_CONTAINER_INFO, 8)),
        (INVALID, lambda: md.CardSetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER, b"\x01", 0)),
        (INVALID, lambda: md.CardSetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER, bytes(4), 1)),
        (
            INVALID,
            lambda: md.CardSetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER, (6).to_bytes(4, "little")),
        ),
        (
            UNSUPPORTED,
            lambda: md.CardSetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER, (3).to_bytes(4, "little")),
        ),
        (UNSUPPORTED, lambda: md.CardSetContainerProperty(cd, 0, md.CCP_CONTAINER_INFO, b"")),
        (UNSUPPORTED, lambda: md.CardSetContainerProperty(cd, 0, md.CCP_ASSOCIATED_ECDH_KEY, b"\x02")),
        (INVALID, lambda: md.CardSetContainerProperty(cd, 0, "No Such Property", b"")),
        (
            md.SCARD_E_NO_KEY_CONTAINER,
            lambda: md.CardSetContainerProperty(cd, 9, md.CCP_PIN_IDENTIFIER, bytes(4)),
        ),
    ):
        raises(code, call)
    # GIDS is writable (a change needs the user), but its key files fix the PIN that guards them
    writable = gids.card_data()
    everyone = md.ROLE_EVERYONE.to_bytes(4, "little")
    raises(
        md.SCARD_W_SECURITY_VIOLATION,
        lambda: md.CardSetContainerProperty(writable, 0, md.CCP_PIN_IDENTIFIER, everyone),
    )
    md.CardAuthenticateEx(writable, md.ROLE_USER, 0, PIN)
    raises(UNSUPPORTED, lambda: md.CardSetContainerProperty(writable, 0, md.CCP_PIN_IDENTIFIER, everyone))
    md.CardDeauthenticateEx(writable, md.PIN_SET_ALL_ROLES, 0)
    assert md.dword(md.CardGetContainerProperty(writable, 0, md.CCP_PIN_IDENTIFIER)) == md.ROLE_USER


def test_capabilities_version_and_dword_decoding(piv: Card, gids: Card) -> None:
    assert md.CardQueryCapabilities(piv.card_data(), 0) == md.CARD_CAPABILITIES(1, 1, 0)  # no key generation
    assert md.CardQueryCapabilities(gids.card_data()) == md.CARD_CAPABILITIES(1, 1, 1)
    raises(md.ERROR_REVISION_MISMATCH, lambda: md.CardQueryCapabilities(piv.card_data(), 2))
    assert md.dword(b"\x01\x00\x00\x80") == 0x80000001
    with pytest.raises(ValueError, match="4 bytes, not 3"):
        md.dword(b"\x01\x00\x00")
