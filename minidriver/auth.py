"""Authentication: PINs, challenge-response, session PINs, PIN change/unblock, deauthentication.

Smart Card Minidriver Specification v7 §1.4 (authentication entry points) and §2 (PIN model).
"""

from __future__ import annotations

import logging

from .constants import (
    CARD_AUTHENTICATE_GENERATE_SESSION_PIN,
    CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE,
    CARD_AUTHENTICATE_PIN_PIN,
    CARD_AUTHENTICATE_SESSION_PIN,
    CARD_DATA_VALUE_UNKNOWN,
    CARD_PIN_SILENT_CONTEXT,
    MAX_PINS,
    PIN_CHANGE_FLAG_CHANGEPIN,
    PIN_CHANGE_FLAG_UNBLOCK,
    PIN_SET_ALL_ROLES,
    ROLE_ADMIN,
    ROLE_USER,
    PinCachePolicyType,
    wszCARD_USER_ADMIN,
    wszCARD_USER_USER,
)
from .context import CardData, Context, context_of
from .entry import check_flags, entry, pin_role
from .errors import Scard, ScardError

log = logging.getLogger("minidriver.auth")


def _user_role(user_id: str) -> int:
    if user_id == wszCARD_USER_USER:
        return ROLE_USER
    if user_id == wszCARD_USER_ADMIN:
        return ROLE_ADMIN
    raise ScardError(Scard.E_INVALID_PARAMETER, f"user id {user_id!r}")


# --- authentication ---------------------------------------------------------------------------


def _verify_pin(ctx: Context, pin_id: int, pin: bytes) -> None:
    try:
        ctx.backend.verify(pin_id, pin)
    except ScardError as error:
        if error.code in (Scard.W_WRONG_CHV, Scard.W_CHV_BLOCKED):
            ctx.auth &= ~(1 << pin_id)
        raise
    ctx.auth |= 1 << pin_id


@entry()
def CardAuthenticatePin(card_data: CardData, pwszUserId: str, pbPin: bytes) -> int:
    """Legacy PIN authentication for "user" (or "admin" where the admin is a PIN).

    Returns cAttemptsRemaining, which is CARD_DATA_VALUE_UNKNOWN after a success;
    on failure the count travels in ScardError.attempts_remaining.
    """
    ctx = context_of(card_data)
    pin_id = _user_role(pwszUserId)
    if not pbPin:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbPin is empty")
    role = pin_role(ctx, pin_id)
    if role.challenge:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{pwszUserId} authenticates by challenge-response")
    _verify_pin(ctx, pin_id, bytes(pbPin))
    return CARD_DATA_VALUE_UNKNOWN


@entry()
def CardGetChallenge(card_data: CardData) -> bytes:
    ctx = context_of(card_data)
    pin_role(ctx, ROLE_ADMIN)
    return ctx.backend.get_challenge(ROLE_ADMIN)


@entry()
def CardAuthenticateChallenge(card_data: CardData, pbResponseData: bytes) -> int:
    ctx = context_of(card_data)
    if not pbResponseData:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbResponseData is empty")
    try:
        ctx.backend.authenticate_challenge(ROLE_ADMIN, bytes(pbResponseData))
    except ScardError as error:
        if error.code == Scard.W_WRONG_CHV:
            ctx.auth &= ~(1 << ROLE_ADMIN)
        raise
    ctx.auth |= 1 << ROLE_ADMIN
    return CARD_DATA_VALUE_UNKNOWN


@entry()
def CardUnblockPin(
    card_data: CardData,
    pwszUserId: str,
    pbAuthenticationData: bytes,
    pbNewPinData: bytes,
    cRetryCount: int,
    dwFlags: int,
) -> None:
    ctx = context_of(card_data)
    if _user_role(pwszUserId) != ROLE_USER:
        raise ScardError(Scard.E_INVALID_PARAMETER, "only the user PIN can be unblocked")
    if dwFlags not in (CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE, CARD_AUTHENTICATE_PIN_PIN):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags {dwFlags:#x}")
    if cRetryCount:
        raise ScardError(Scard.E_INVALID_PARAMETER, "changing the retry count is not supported")
    ctx.backend.unblock(ROLE_USER, ROLE_ADMIN, bytes(pbAuthenticationData), bytes(pbNewPinData))
    _bump_pins(ctx)


@entry()
def CardChangeAuthenticator(
    card_data: CardData,
    pwszUserId: str,
    pbCurrentAuthenticator: bytes,
    pbNewAuthenticator: bytes,
    cRetryCount: int,
    dwFlags: int,
) -> int:
    ctx = context_of(card_data)
    pin_id = _user_role(pwszUserId)
    if dwFlags not in (CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE, CARD_AUTHENTICATE_PIN_PIN):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags {dwFlags:#x}")
    if cRetryCount:
        raise ScardError(Scard.E_INVALID_PARAMETER, "changing the retry count is not supported")
    pin_role(ctx, pin_id)
    ctx.backend.change_pin(pin_id, bytes(pbCurrentAuthenticator), bytes(pbNewAuthenticator))
    ctx.auth |= 1 << pin_id
    _bump_pins(ctx)
    return CARD_DATA_VALUE_UNKNOWN


def _bump_pins(ctx: Context) -> None:
    """After a PIN change: advance bPinsFreshness (cached PIN info is stale).

    Done after the change because writing cardcf itself needs the authentication
    the change brought; a card that still refuses keeps its counters.
    """
    try:
        ctx.bump(pins=True)
    except ScardError as error:
        if error.code != Scard.W_SECURITY_VIOLATION:
            raise
        log.info("cardcf not writable after the PIN change; PIN freshness unchanged")


@entry()
def CardDeauthenticate(card_data: CardData, pwszUserId: str, dwFlags: int = 0) -> None:
    check_flags(dwFlags)
    _deauthenticate(context_of(card_data), 1 << _user_role(pwszUserId), card_data)


def _deauthenticate(ctx: Context, pin_set: int, card_data: CardData) -> None:
    pin_set &= ~1 & PIN_SET_ALL_ROLES  # the ROLE_EVERYONE bit is ignored
    ctx.roles(card_data)
    ctx.backend.deauthenticate(pin_set)
    ctx.auth &= ~pin_set
    for pin_id in range(MAX_PINS):
        if pin_set >> pin_id & 1:
            card_data.session_pin_cache.pop(pin_id, None)


@entry(min_version=6)
def CardGetChallengeEx(card_data: CardData, PinId: int, dwFlags: int = 0) -> bytes:
    check_flags(dwFlags)
    ctx = context_of(card_data)
    role = pin_role(ctx, PinId)
    if not role.challenge:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"PIN {PinId} is not a challenge-response PIN")
    return ctx.backend.get_challenge(PinId)


@entry(min_version=6)
def CardAuthenticateEx(
    card_data: CardData, PinId: int, dwFlags: int, pbPinData: bytes | None
) -> tuple[bytes | None, int]:
    """Authenticate role PinId. Returns (session PIN or None, cAttemptsRemaining).

    Plain: verify the PIN, the role stays authenticated. GENERATE_SESSION_PIN:
    verify and return a session PIN without leaving the role unlocked.
    SESSION_PIN: pbPinData is a session PIN. External roles take no PIN data and
    always return a session PIN (Windows caches it instead of a PIN).
    Challenge-response roles take the response to CardGetChallengeEx.
    """
    ctx = context_of(card_data)
    check_flags(
        dwFlags,
        CARD_PIN_SILENT_CONTEXT | CARD_AUTHENTICATE_GENERATE_SESSION_PIN | CARD_AUTHENTICATE_SESSION_PIN,
    )
    generate = bool(dwFlags & CARD_AUTHENTICATE_GENERATE_SESSION_PIN)
    with_session = bool(dwFlags & CARD_AUTHENTICATE_SESSION_PIN)
    if generate and with_session:
        raise ScardError(Scard.E_INVALID_PARAMETER, "GENERATE_SESSION_PIN and SESSION_PIN together")
    role = pin_role(ctx, PinId)
    data = bytes(pbPinData) if pbPinData else b""
    policy = int(role.info.PinCachePolicy.PinCachePolicyType)
    cacheable = policy in (PinCachePolicyType.PinCacheNormal, PinCachePolicyType.PinCacheTimed)

    if with_session:
        if not role.session_pins:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"PIN {PinId} has no session PINs")
        if not data:
            raise ScardError(Scard.E_INVALID_PARAMETER, "session PIN missing")
        try:
            ctx.backend.verify_session_pin(PinId, data)
        except ScardError:
            ctx.auth &= ~(1 << PinId)
            raise
        ctx.auth |= 1 << PinId
        if cacheable:
            card_data.session_pin_cache[PinId] = data
        return None, CARD_DATA_VALUE_UNKNOWN

    if role.external:
        if data:
            raise ScardError(Scard.E_INVALID_PARAMETER, "an external PIN takes no PIN data")
        token = ctx.backend.generate_session_pin(PinId, None)
        if generate:
            ctx.backend.deauthenticate(1 << PinId)
            ctx.auth &= ~(1 << PinId)
        else:
            ctx.auth |= 1 << PinId
        if cacheable:
            card_data.session_pin_cache[PinId] = token
        return token, CARD_DATA_VALUE_UNKNOWN

    if role.challenge:
        if generate:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "no session PINs for challenge-response roles")
        if not data:
            raise ScardError(Scard.E_INVALID_PARAMETER, "response missing")
        try:
            ctx.backend.authenticate_challenge(PinId, data)
        except ScardError:
            ctx.auth &= ~(1 << PinId)
            raise
        ctx.auth |= 1 << PinId
        return None, CARD_DATA_VALUE_UNKNOWN

    if not data:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbPinData is empty")
    if generate:
        if not role.session_pins:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"PIN {PinId} has no session PINs")
        try:
            token = ctx.backend.generate_session_pin(PinId, data)
        except ScardError as error:
            if error.code in (Scard.W_WRONG_CHV, Scard.W_CHV_BLOCKED):
                ctx.auth &= ~(1 << PinId)
            raise
        ctx.auth &= ~(1 << PinId)
        if cacheable:
            card_data.session_pin_cache[PinId] = token
        return token, CARD_DATA_VALUE_UNKNOWN
    _verify_pin(ctx, PinId, data)
    return None, CARD_DATA_VALUE_UNKNOWN


@entry(min_version=6)
def CardChangeAuthenticatorEx(
    card_data: CardData,
    dwFlags: int,
    dwAuthenticatingPinId: int,
    pbAuthenticatingPinData: bytes,
    dwTargetPinId: int,
    pbTargetData: bytes,
    cRetryCount: int = 0,
) -> int:
    """Change a PIN (auth == target) or unblock one with another role's PIN."""
    ctx = context_of(card_data)
    check_flags(dwFlags, PIN_CHANGE_FLAG_UNBLOCK | PIN_CHANGE_FLAG_CHANGEPIN | CARD_PIN_SILENT_CONTEXT)
    kind = dwFlags & (PIN_CHANGE_FLAG_UNBLOCK | PIN_CHANGE_FLAG_CHANGEPIN)
    if kind not in (PIN_CHANGE_FLAG_UNBLOCK, PIN_CHANGE_FLAG_CHANGEPIN):
        raise ScardError(Scard.E_INVALID_PARAMETER, "exactly one of UNBLOCK / CHANGEPIN")
    if cRetryCount:
        raise ScardError(Scard.E_INVALID_PARAMETER, "cRetryCount must be 0")
    pin_role(ctx, dwAuthenticatingPinId)
    pin_role(ctx, dwTargetPinId)
    if not pbTargetData:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbTargetData is empty")
    if kind == PIN_CHANGE_FLAG_CHANGEPIN:
        if dwAuthenticatingPinId != dwTargetPinId:
            raise ScardError(Scard.E_INVALID_PARAMETER, "a PIN change authenticates with the same PIN")
        ctx.backend.change_pin(dwTargetPinId, bytes(pbAuthenticatingPinData), bytes(pbTargetData))
        ctx.auth |= 1 << dwTargetPinId
    else:
        if dwAuthenticatingPinId == dwTargetPinId:
            raise ScardError(Scard.E_INVALID_PARAMETER, "a PIN cannot unblock itself")
        ctx.backend.unblock(
            dwTargetPinId, dwAuthenticatingPinId, bytes(pbAuthenticatingPinData), bytes(pbTargetData)
        )
    card_data.session_pin_cache.pop(dwTargetPinId, None)
    _bump_pins(ctx)
    return CARD_DATA_VALUE_UNKNOWN


@entry(min_version=6)
def CardDeauthenticateEx(card_data: CardData, PinId: int, dwFlags: int = 0) -> None:
    """Deauthenticate every role in the PIN_SET `PinId` (0xFF = all); the others stay authenticated."""
    check_flags(dwFlags)
    _deauthenticate(context_of(card_data), PinId, card_data)
