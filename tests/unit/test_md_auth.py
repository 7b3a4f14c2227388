"""Authentication entry points (minidriver spec §1.4 "Authentication", §2 PIN model): results and errors.

Every test uses a fresh in-process card, because PIN counters and authentication state are
what the tests change.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from md_support import (
    GIDS_ADMIN_KEY,
    PIN,
    PIV_MANAGEMENT_KEY,
    PUK,
    Card,
    WithoutVendorCommands,
    auth_state,
    open_card,
    raises,
)

import minidriver as md
from minidriver.cache import GlobalCache
from signin.enroll import admin_response

EXTERNAL_ROLE = 7  # the piv profile's "fingerprint" role (ExternalPinType)
UNKNOWN = md.CARD_DATA_VALUE_UNKNOWN
INVALID = md.SCARD_E_INVALID_PARAMETER


@pytest.fixture
def piv() -> Iterator[Card]:
    card = Card(open_card("piv"), {})
    yield card
    card.virtual.close()


@pytest.fixture
def gids() -> Iterator[Card]:
    card = Card(open_card("gids"), {})
    yield card
    card.virtual.close()


# --- CardAuthenticatePin / CardAuthenticateEx with a PIN ---------------------------------------


def test_wrong_pin_counts_down_then_blocks_and_a_blocked_pin_refuses_the_right_one(piv: Card) -> None:
    card_data = piv.card_data()
    assert md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, PIN) == UNKNOWN
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_USER)
    wrong = raises(
        md.SCARD_W_WRONG_CHV, lambda: md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, b"0000")
    )
    assert wrong.attempts_remaining == 2
    assert auth_state(card_data) == 0  # a failed try drops the role
    wrong = raises(md.SCARD_W_WRONG_CHV, lambda: md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"0000"))
    assert wrong.attempts_remaining == 1
    blocked = raises(
        md.SCARD_W_CHV_BLOCKED, lambda: md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"0000")
    )
    assert blocked.attempts_remaining == 0
    blocked = raises(md.SCARD_W_CHV_BLOCKED, lambda: md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN))
    assert blocked.attempts_remaining == 0
    assert auth_state(card_data) == 0


def test_authenticate_pin_rejects_bad_parameters(piv: Card) -> None:
    card_data = piv.card_data()
    raises(INVALID, lambda: md.CardAuthenticatePin(card_data, md.wszCARD_USER_EVERYONE, PIN))
    raises(INVALID, lambda: md.CardAuthenticatePin(card_data, "root", PIN))
    raises(INVALID, lambda: md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, b""))
    # the admin role of PIV and GIDS is a challenge-response key, not a PIN
    raises(INVALID, lambda: md.CardAuthenticatePin(card_data, md.wszCARD_USER_ADMIN, b"12345678"))
    assert auth_state(card_data) == 0


def test_authenticate_ex_rejects_bad_parameters(piv: Card) -> None:
    card_data = piv.card_data()
    both = md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN | md.CARD_AUTHENTICATE_SESSION_PIN
    for pin_id, flags, data in (
        (md.ROLE_EVERYONE, 0, PIN),  # everyone is not a PIN
        (md.MAX_PINS, 0, PIN),
        (5, 0, PIN),  # a valid id with no role on this card
        (md.ROLE_USER, 0x4, PIN),  # unknown flag
        (md.ROLE_USER, both, PIN),
        (md.ROLE_USER, 0, b""),
        (md.ROLE_USER, 0, None),
        (md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, b""),
        (md.ROLE_ADMIN, 0, b""),  # challenge-response without a response
        (EXTERNAL_ROLE, 0, b"1234"),  # an external role takes no PIN data
    ):
        raises(INVALID, lambda p=pin_id, f=flags, d=data: md.CardAuthenticateEx(card_data, p, f, d))
    raises(
        md.SCARD_E_UNSUPPORTED_FEATURE,
        lambda: md.CardAuthenticateEx(
            card_data, md.ROLE_ADMIN, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, b"x"
        ),
    )
    assert auth_state(card_data) == 0


def test_silent_context_flag_is_accepted(piv: Card) -> None:
    card_data = piv.card_data()
    assert md.CardAuthenticateEx(card_data, md.ROLE_USER, md.CARD_PIN_SILENT_CONTEXT, PIN) == (None, UNKNOWN)
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_USER)


# --- session PINs and external roles -----------------------------------------------------------


def test_generated_session_pin_unlocks_once_used_and_a_forged_one_does_not(piv: Card) -> None:
    card_data = piv.card_data()
    token, attempts = md.CardAuthenticateEx(
        card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, PIN
    )
    assert token and attempts == UNKNOWN
    assert auth_state(card_data) == 0  # generating does not leave the card unlocked (spec §2.4)
    assert card_data.session_pin_cache[md.ROLE_USER] == token  # PinCacheNormal: the CSP may cache it
    other = piv.card_data()
    forged = bytes(len(token))
    raises(
        md.SCARD_W_WRONG_CHV,
        lambda: md.CardAuthenticateEx(other, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, forged),
    )
    assert auth_state(other) == 0 and md.ROLE_USER not in other.session_pin_cache
    assert md.CardAuthenticateEx(other, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, token) == (
        None,
        UNKNOWN,
    )
    assert auth_state(other) == md.CREATE_PIN_SET(md.ROLE_USER)
    assert other.session_pin_cache[md.ROLE_USER] == token


def test_generate_session_pin_with_a_wrong_pin_counts_down(piv: Card) -> None:
    card_data = piv.card_data()
    error = raises(
        md.SCARD_W_WRONG_CHV,
        lambda: md.CardAuthenticateEx(
            card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, b"999999"
        ),
    )
    assert error.attempts_remaining == 2
    assert md.ROLE_USER not in card_data.session_pin_cache


def test_external_role_authenticates_without_pin_data_and_returns_a_session_pin(piv: Card) -> None:
    card_data = piv.card_data()
    token, attempts = md.CardAuthenticateEx(card_data, EXTERNAL_ROLE, 0, None)
    assert token and attempts == UNKNOWN
    assert auth_state(card_data) == md.CREATE_PIN_SET(EXTERNAL_ROLE)
    assert card_data.session_pin_cache[EXTERNAL_ROLE] == token
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(EXTERNAL_ROLE), 0)
    assert auth_state(card_data) == 0 and EXTERNAL_ROLE not in card_data.session_pin_cache
    token, _ = md.CardAuthenticateEx(
        card_data, EXTERNAL_ROLE, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, None
    )
    assert token and auth_state(card_data) == 0  # GENERATE leaves the role locked, the token unlocks it
    md.CardAuthenticateEx(card_data, EXTERNAL_ROLE, md.CARD_AUTHENTICATE_SESSION_PIN, token)
    assert auth_state(card_data) == md.CREATE_PIN_SET(EXTERNAL_ROLE)


def test_a_card_without_session_pins_says_unsupported_feature(piv: Card) -> None:
    card_data = md.CardData.inprocess(WithoutVendorCommands(piv.virtual.card), cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    for flags in (md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, md.CARD_AUTHENTICATE_SESSION_PIN):
        raises(
            md.SCARD_E_UNSUPPORTED_FEATURE,
            lambda f=flags: md.CardAuthenticateEx(card_data, md.ROLE_USER, f, PIN),
        )
    # the plain PIN still works; PIV's own log-out (VERIFY P1=FF, SP 800-73-4 §3.2.1) clears the PIN
    # only, so other roles need a reset: UNSUPPORTED_FEATURE tells the Base CSP to reset (spec §1.4)
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_USER)
    raises(
        md.SCARD_E_UNSUPPORTED_FEATURE, lambda: md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    )
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(md.ROLE_USER), 0)
    assert auth_state(card_data) == 0
    # the card agrees: VERIFY without data (SP 800-73-4 §3.2.1) reports the PIN not verified, 3 tries
    assert piv.virtual.card.transmit(bytes.fromhex("00200080")) == b"\x63\xc3"


# --- challenge-response (admin) -----------------------------------------------------------------


def test_admin_challenge_response_legacy_and_ex(gids: Card) -> None:
    card_data = gids.card_data()
    raises(INVALID, lambda: md.CardAuthenticateChallenge(card_data, b""))
    challenge = md.CardGetChallenge(card_data)
    assert len(challenge) % 8 == 0 and challenge
    error = raises(
        md.SCARD_W_WRONG_CHV, lambda: md.CardAuthenticateChallenge(card_data, bytes(len(challenge)))
    )
    assert auth_state(card_data) == 0, error
    challenge = md.CardGetChallenge(card_data)
    assert md.CardAuthenticateChallenge(card_data, admin_response(GIDS_ADMIN_KEY, challenge)) == UNKNOWN
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_ADMIN)
    md.CardDeauthenticate(card_data, md.wszCARD_USER_ADMIN, 0)
    assert auth_state(card_data) == 0
    raises(INVALID, lambda: md.CardGetChallengeEx(card_data, md.ROLE_USER, 0))  # a PIN, not a key
    raises(INVALID, lambda: md.CardGetChallengeEx(card_data, md.ROLE_ADMIN, 1))
    challenge = md.CardGetChallengeEx(card_data, md.ROLE_ADMIN, 0)
    raises(
        md.SCARD_W_WRONG_CHV,
        lambda: md.CardAuthenticateEx(card_data, md.ROLE_ADMIN, 0, bytes(len(challenge))),
    )
    challenge = md.CardGetChallengeEx(card_data, md.ROLE_ADMIN, 0)
    response = admin_response(GIDS_ADMIN_KEY, challenge)
    assert md.CardAuthenticateEx(card_data, md.ROLE_ADMIN, 0, response) == (None, UNKNOWN)
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_ADMIN)


# --- change and unblock --------------------------------------------------------------------------


def test_change_authenticator_legacy(piv: Card) -> None:
    card_data = piv.card_data()
    pin_flag = md.CARD_AUTHENTICATE_PIN_PIN
    user = md.wszCARD_USER_USER
    raises(INVALID, lambda: md.CardChangeAuthenticator(card_data, "root", PIN, b"654321", 0, pin_flag))
    raises(INVALID, lambda: md.CardChangeAuthenticator(card_data, user, PIN, b"654321", 0, 0x8))
    raises(INVALID, lambda: md.CardChangeAuthenticator(card_data, user, PIN, b"654321", 5, pin_flag))
    wrong = raises(
        md.SCARD_W_WRONG_CHV,
        lambda: md.CardChangeAuthenticator(card_data, user, b"000000", b"654321", 0, pin_flag),
    )
    assert wrong.attempts_remaining == 2
    before = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(card_data, None, "cardcf"))
    assert md.CardChangeAuthenticator(card_data, user, PIN, b"654321", 0, pin_flag) == UNKNOWN
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_USER)  # the change authenticated the role
    after = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(card_data, None, "cardcf"))
    assert after.bPinsFreshness == (before.bPinsFreshness + 1) & 0xFF  # cached PIN info is stale
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    raises(md.SCARD_W_WRONG_CHV, lambda: md.CardAuthenticatePin(card_data, user, PIN))
    md.CardAuthenticatePin(card_data, user, b"654321")


def test_unblock_pin_legacy_with_the_admin_key(gids: Card) -> None:
    card_data = gids.card_data()
    user, response_flag = md.wszCARD_USER_USER, md.CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE
    raises(
        INVALID, lambda: md.CardUnblockPin(card_data, md.wszCARD_USER_ADMIN, b"x", b"4321", 0, response_flag)
    )
    raises(INVALID, lambda: md.CardUnblockPin(card_data, user, b"x", b"4321", 0, 0))
    raises(INVALID, lambda: md.CardUnblockPin(card_data, user, b"x", b"4321", 3, response_flag))
    wrong = bytes(8)
    raises(md.SCARD_W_WRONG_CHV, lambda: md.CardUnblockPin(card_data, user, wrong, b"4321", 0, response_flag))
    response = admin_response(GIDS_ADMIN_KEY, md.CardGetChallenge(card_data))
    md.CardUnblockPin(card_data, user, response, b"4321", 0, response_flag)
    md.CardAuthenticatePin(card_data, user, b"4321")
    assert auth_state(card_data) & md.CREATE_PIN_SET(md.ROLE_USER)


def test_change_authenticator_ex_rules_and_puk_unblock(piv: Card) -> None:
    card_data = piv.card_data()
    change, unblock = md.PIN_CHANGE_FLAG_CHANGEPIN, md.PIN_CHANGE_FLAG_UNBLOCK
    puk_role = 3  # the piv profile's PUK (UnblockOnlyPin)
    for flags, auth_id, auth, target_id, target, retries in (
        (change | unblock, 1, PIN, 1, b"654321", 0),
        (0, 1, PIN, 1, b"654321", 0),
        (0x100, 1, PIN, 1, b"654321", 0),
        (change, 1, PIN, 1, b"654321", 3),
        (change, 1, PIN, 1, b"", 0),
        (change, puk_role, PUK, 1, b"654321", 0),  # a change authenticates with the PIN itself
        (unblock, 1, PIN, 1, b"654321", 0),  # a PIN cannot unblock itself
        (change, 0, PIN, 1, b"654321", 0),
        (change, 1, PIN, 6, b"654321", 0),
    ):
        raises(
            INVALID,
            lambda f=flags, a=auth_id, d=auth, t=target_id, n=target, r=retries: md.CardChangeAuthenticatorEx(
                card_data, f, a, d, t, n, r
            ),
        )
    wrong = raises(
        md.SCARD_W_WRONG_CHV,
        lambda: md.CardChangeAuthenticatorEx(card_data, unblock, puk_role, b"00000000", 1, b"111111"),
    )
    assert wrong.attempts_remaining == 2
    flags = unblock | md.CARD_PIN_SILENT_CONTEXT
    assert md.CardChangeAuthenticatorEx(card_data, flags, puk_role, PUK, 1, b"111111") == UNKNOWN
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"111111")
    assert auth_state(card_data) & md.CREATE_PIN_SET(md.ROLE_USER)


def test_change_pin_drops_the_cached_session_pin(piv: Card) -> None:
    card_data = piv.card_data()
    md.CardAuthenticateEx(card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, PIN)
    assert md.ROLE_USER in card_data.session_pin_cache
    md.CardChangeAuthenticatorEx(card_data, md.PIN_CHANGE_FLAG_CHANGEPIN, 1, PIN, 1, b"222222")
    assert md.ROLE_USER not in card_data.session_pin_cache


# --- deauthenticate ------------------------------------------------------------------------------


def test_deauthenticate_rules(piv: Card) -> None:
    card_data = piv.card_data()
    raises(INVALID, lambda: md.CardDeauthenticate(card_data, md.wszCARD_USER_USER, 1))
    raises(INVALID, lambda: md.CardDeauthenticate(card_data, "root", 0))
    raises(INVALID, lambda: md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 1))
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    challenge = md.CardGetChallengeEx(card_data, md.ROLE_ADMIN, 0)
    md.CardAuthenticateEx(card_data, md.ROLE_ADMIN, 0, admin_response(PIV_MANAGEMENT_KEY, challenge))
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_USER) | md.CREATE_PIN_SET(md.ROLE_ADMIN)
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(md.ROLE_EVERYONE), 0)  # the everyone bit is ignored
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_USER) | md.CREATE_PIN_SET(md.ROLE_ADMIN)
    md.CardDeauthenticate(card_data, md.wszCARD_USER_USER, 0)
    assert auth_state(card_data) == md.CREATE_PIN_SET(md.ROLE_ADMIN)
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    assert auth_state(card_data) == 0
