"""Card and container properties (CardGet/SetProperty, CardGet/SetContainerProperty), capabilities.

Smart Card Minidriver Specification v7 §3 (card properties, container properties, Get/Set rules).
"""

from __future__ import annotations

import struct

from .cache import Freshness
from .constants import (
    CARD_PIN_STRENGTH_PLAINTEXT,
    CCP_ASSOCIATED_ECDH_KEY,
    CCP_CONTAINER_INFO,
    CCP_PIN_IDENTIFIER,
    CP_CARD_AUTHENTICATED_STATE,
    CP_CARD_CACHE_MODE,
    CP_CARD_CAPABILITIES,
    CP_CARD_FREE_SPACE,
    CP_CARD_GUID,
    CP_CARD_KEYSIZES,
    CP_CARD_LIST_PINS,
    CP_CARD_PIN_INFO,
    CP_CARD_PIN_STRENGTH_CHANGE,
    CP_CARD_PIN_STRENGTH_UNBLOCK,
    CP_CARD_PIN_STRENGTH_VERIFY,
    CP_CARD_READ_ONLY,
    CP_CARD_SERIAL_NO,
    CP_CHAINING_MODES,
    CP_ENUM_ALGORITHMS,
    CP_KEY_IMPORT_SUPPORT,
    CP_PADDING_SCHEMES,
    CP_PARENT_WINDOW,
    CP_PIN_CONTEXT_STRING,
    CP_SUPPORTS_WIN_X509_ENROLLMENT,
    ECDHE_KEYSPECS,
    ECDSA_KEYSPECS,
    MAX_PINS,
    ROLE_EVERYONE,
    RSA_KEYSPECS,
    PinCachePolicyType,
    PinType,
)
from .containers import container_info_of
from .context import CardData, context_of
from .entry import check_flags, check_version, dword_bytes, entry, fit, pin_role
from .errors import Scard, ScardError
from .structures import CARD_CAPABILITIES, PIN_CACHE_POLICY, PIN_INFO


@entry()
def CardQueryCapabilities(card_data: CardData, dwVersion: int = 1) -> CARD_CAPABILITIES:
    check_version(dwVersion, 1)
    return context_of(card_data).backend.capabilities()


# --- properties -------------------------------------------------------------------------------


@entry(min_version=6)
def CardGetContainerProperty(
    card_data: CardData, bContainerIndex: int, wszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    check_flags(dwFlags)
    ctx = context_of(card_data)
    container = ctx.container(card_data, bContainerIndex)
    if wszProperty == CCP_CONTAINER_INFO:
        info = container_info_of(container)
        return fit(info.pack(), cbData)
    if wszProperty == CCP_PIN_IDENTIFIER:
        return fit(dword_bytes(container.pin_id), cbData)
    if wszProperty == CCP_ASSOCIATED_ECDH_KEY and card_data.dwVersion >= 7:
        partner = container.extra.get("ecdh_partner")
        if partner is None:
            raise ScardError(Scard.E_INVALID_PARAMETER, "no associated ECDH key")
        return fit(bytes([partner]), cbData)
    raise ScardError(Scard.E_INVALID_PARAMETER, f"container property {wszProperty!r}")


@entry(min_version=6)
def CardSetContainerProperty(
    card_data: CardData, bContainerIndex: int, wszProperty: str, pbData: bytes, dwFlags: int = 0
) -> None:
    check_flags(dwFlags)
    ctx = context_of(card_data)
    container = ctx.container(card_data, bContainerIndex)
    if wszProperty == CCP_PIN_IDENTIFIER:
        if len(pbData) != 4:
            raise ScardError(Scard.E_INVALID_PARAMETER, "PIN_ID is a DWORD")
        pin_id = struct.unpack("<I", pbData)[0]
        if pin_id != ROLE_EVERYONE:
            pin_role(ctx, pin_id)
        ctx.require_writable()
        ctx.bump(containers=True)
        ctx.backend.set_container_pin(container, pin_id)
        return
    if wszProperty in (CCP_CONTAINER_INFO, CCP_ASSOCIATED_ECDH_KEY):
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{wszProperty!r} cannot be set on this card")
    raise ScardError(Scard.E_INVALID_PARAMETER, f"container property {wszProperty!r}")


@entry(min_version=6)
def CardGetProperty(
    card_data: CardData, wszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    """Card properties; DWORD/BOOL values come back as 4 little-endian bytes."""
    ctx = context_of(card_data)
    backend = ctx.backend
    if wszProperty == CP_CARD_KEYSIZES:
        if dwFlags not in RSA_KEYSPECS | ECDSA_KEYSPECS | ECDHE_KEYSPECS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags (key spec) {dwFlags}")
        return fit(
            ctx.cached(
                card_data,
                Freshness.FILES,
                f"Cached_CardProperty_Key Sizes_{dwFlags}",
                lambda: backend.key_sizes(dwFlags).pack(),
            ),
            cbData,
        )
    if wszProperty in (
        CP_CARD_PIN_INFO,
        CP_CARD_PIN_STRENGTH_VERIFY,
        CP_CARD_PIN_STRENGTH_CHANGE,
        CP_CARD_PIN_STRENGTH_UNBLOCK,
    ):
        if not 0 <= dwFlags < MAX_PINS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags (PIN id) {dwFlags}")
        if wszProperty == CP_CARD_PIN_INFO and dwFlags == ROLE_EVERYONE:
            # Everyone is no secret: type 0, purpose 0, never cached (as OpenSC reports it).
            never = PIN_CACHE_POLICY(PinCachePolicyType=PinCachePolicyType.PinCacheNone)
            everyone = PIN_INFO(PinCachePolicy=never)
            return fit(everyone.pack(), cbData)
        role = pin_role(ctx, dwFlags)
        if wszProperty == CP_CARD_PIN_INFO:
            return fit(role.info.pack(), cbData)
        if wszProperty == CP_CARD_PIN_STRENGTH_VERIFY:
            return fit(dword_bytes(role.strength_verify), cbData)
        # Change and unblock take the new value in plaintext, which only a PIN role can use:
        # an external role (PIN pad, biometric) or a challenge-response key has no PIN to set.
        plain = int(role.info.PinType) == PinType.AlphaNumericPinType
        return fit(dword_bytes(CARD_PIN_STRENGTH_PLAINTEXT if plain else 0), cbData)
    check_flags(dwFlags)
    if wszProperty == CP_CARD_FREE_SPACE:
        return fit(backend.free_space().pack(), cbData)
    if wszProperty == CP_CARD_CAPABILITIES:
        return fit(backend.capabilities().pack(), cbData)
    if wszProperty == CP_CARD_READ_ONLY:
        return fit(dword_bytes(int(backend.read_only)), cbData)
    if wszProperty == CP_CARD_CACHE_MODE:
        return fit(dword_bytes(backend.cache_mode), cbData)
    if wszProperty == CP_SUPPORTS_WIN_X509_ENROLLMENT:
        return fit(dword_bytes(int(not backend.read_only)), cbData)
    if wszProperty == CP_CARD_GUID:
        return fit(backend.card_id(), cbData)
    if wszProperty == CP_CARD_SERIAL_NO:
        return fit(backend.serial_number(), cbData)
    if wszProperty == CP_CARD_LIST_PINS:
        pins = 0
        for pin_id in ctx.roles(card_data):
            pins |= 1 << pin_id
        return fit(dword_bytes(pins), cbData)
    if wszProperty == CP_CARD_AUTHENTICATED_STATE:
        return fit(dword_bytes(ctx.authenticated_state()), cbData)
    if wszProperty == CP_KEY_IMPORT_SUPPORT and card_data.dwVersion >= 7:
        return fit(dword_bytes(0), cbData)
    if wszProperty in (CP_PARENT_WINDOW, CP_PIN_CONTEXT_STRING):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{wszProperty!r} is write-only")
    if wszProperty in (CP_ENUM_ALGORITHMS, CP_PADDING_SCHEMES, CP_CHAINING_MODES):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{wszProperty!r}: no secure key injection")
    raise ScardError(Scard.E_INVALID_PARAMETER, f"unknown property {wszProperty!r}")


@entry(min_version=6, transacted=False)
def CardSetProperty(card_data: CardData, wszProperty: str, pbData: bytes, dwFlags: int = 0) -> None:
    """Only CP_PARENT_WINDOW and CP_PIN_CONTEXT_STRING are settable (the read-only-card rule)."""
    ctx = context_of(card_data)
    check_flags(dwFlags)
    if wszProperty == CP_PARENT_WINDOW:
        if len(pbData) not in (4, 8):
            raise ScardError(Scard.E_INVALID_PARAMETER, "HWND is pointer-sized")
        ctx.parent_window = int.from_bytes(pbData, "little")
        return
    if wszProperty == CP_PIN_CONTEXT_STRING:
        text = bytes(pbData).decode("utf-16-le", errors="replace").rstrip("\0")
        ctx.pin_context = text
        return
    if wszProperty in (
        CP_CARD_FREE_SPACE,
        CP_CARD_CAPABILITIES,
        CP_CARD_KEYSIZES,
        CP_CARD_LIST_PINS,
        CP_CARD_AUTHENTICATED_STATE,
        CP_CARD_PIN_STRENGTH_VERIFY,
        CP_CARD_PIN_STRENGTH_CHANGE,
        CP_CARD_PIN_STRENGTH_UNBLOCK,
        CP_KEY_IMPORT_SUPPORT,
        CP_CARD_READ_ONLY,
        CP_CARD_CACHE_MODE,
        CP_SUPPORTS_WIN_X509_ENROLLMENT,
        CP_CARD_GUID,
        CP_CARD_SERIAL_NO,
        CP_CARD_PIN_INFO,
    ):
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{wszProperty!r} cannot be set on this card")
    raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"unknown property {wszProperty!r}")


def dword(data: bytes) -> int:
    """Decode a DWORD/BOOL property value."""
    if len(data) != 4:
        raise ValueError(f"a DWORD is 4 bytes, not {len(data)}")
    return int(struct.unpack("<I", data)[0])
