"""PIN model: several roles at once, PIN_SETs, session PINs, external PINs, idle reset and recovery."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from md_support import auth_state

import minidriver as md
from minidriver.cache import GlobalCache
from vcard.host import TRAFFIC, InProcessConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import PivProvisioner

SIGN_PIN_ROLE = 3
FINGER_ROLE = 4


@pytest.fixture
def multi() -> Iterator[Any]:
    virtual = VirtualCard.open(load_profile("multi-pin"), None, ephemeral=True)
    virtual.keys = PivProvisioner(InProcessConnection(virtual.card)).provision(
        {0x9A: "rsa2048", 0x9C: "p256", 0x9E: "p256"}
    )
    yield virtual
    virtual.close()


def _cd(virtual: Any, **kwargs: Any) -> md.CardData:
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache(), **kwargs)
    md.CardAcquireContext(card_data, 0)
    return card_data


def _sign_ecdsa(card_data: md.CardData, index: int) -> bytes:
    info = md.CARD_SIGNING_INFO(2, index, md.AT_ECDSA_P256, pbData=hashlib.sha256(b"m").digest())
    return md.CardSignData(card_data, info)


def test_pin_list_and_pin_info_per_role(multi: Any) -> None:
    card_data = _cd(multi)
    pins = md.dword(md.CardGetProperty(card_data, md.CP_CARD_LIST_PINS))
    assert pins == 0b11110  # roles 1-4
    infos = {
        role: md.PIN_INFO.unpack(md.CardGetProperty(card_data, md.CP_CARD_PIN_INFO, 36, role))
        for role in (1, 2, 3, 4)
    }
    assert infos[1].PinPurpose == md.PinPurpose.PrimaryCardPin
    assert infos[2].PinType == md.PinType.ChallengeResponsePinType
    assert infos[3].PinPurpose == md.PinPurpose.DigitalSignaturePin
    assert infos[3].PinCachePolicy.PinCachePolicyType == md.PinCachePolicyType.PinCacheAlwaysPrompt
    assert infos[4].PinType == md.PinType.ExternalPinType
    assert infos[1].dwUnblockPermission == md.CREATE_PIN_SET(md.ROLE_ADMIN)


def test_pin_strength_advertises_session_pins(multi: Any) -> None:
    card_data = _cd(multi)
    strength = md.dword(md.CardGetProperty(card_data, md.CP_CARD_PIN_STRENGTH_VERIFY, None, md.ROLE_USER))
    assert strength == md.CARD_PIN_STRENGTH_PLAINTEXT | md.CARD_PIN_STRENGTH_SESSION_PIN
    external = md.dword(md.CardGetProperty(card_data, md.CP_CARD_PIN_STRENGTH_VERIFY, None, FINGER_ROLE))
    assert external & md.CARD_PIN_STRENGTH_SESSION_PIN


def test_pin_strength_change_and_unblock_is_plaintext_for_pins_only(multi: Any) -> None:
    card_data = _cd(multi)
    for prop in (md.CP_CARD_PIN_STRENGTH_CHANGE, md.CP_CARD_PIN_STRENGTH_UNBLOCK):
        strengths = {role: md.dword(md.CardGetProperty(card_data, prop, None, role)) for role in (1, 2, 3, 4)}
        assert strengths == {
            md.ROLE_USER: md.CARD_PIN_STRENGTH_PLAINTEXT,
            md.ROLE_ADMIN: 0,  # challenge-response key
            SIGN_PIN_ROLE: md.CARD_PIN_STRENGTH_PLAINTEXT,
            FINGER_ROLE: 0,  # external: nothing to type
        }


def test_everyone_pin_info_is_an_uncached_empty_role(multi: Any) -> None:
    """ROLE_EVERYONE is not on the card; its PIN_INFO is fixed (type 0, purpose 0, PinCacheNone)."""
    card_data = _cd(multi)
    raw = md.CardGetProperty(card_data, md.CP_CARD_PIN_INFO, 36, md.ROLE_EVERYONE)
    assert raw == struct.pack("<9I", 6, 0, 0, 0, 0, 6, md.PinCachePolicyType.PinCacheNone, 0, 0)


def test_session_pin_generate_then_use_from_another_process(multi: Any) -> None:
    generator = _cd(multi)
    token, _ = md.CardAuthenticateEx(
        generator, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, b"123456"
    )
    assert token and token != b"123456"
    assert auth_state(generator) == 0  # GENERATE_SESSION_PIN does not leave the card unlocked
    consumer = _cd(multi)  # process B: only the session PIN travels
    with pytest.raises(md.ScardError) as wrong:
        md.CardAuthenticateEx(consumer, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, bytes(16))
    assert wrong.value.code == md.SCARD_W_WRONG_CHV
    session, _ = md.CardAuthenticateEx(consumer, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, token)
    assert session is None and auth_state(consumer) == 0x02
    md.CardDeauthenticateEx(consumer, md.CREATE_PIN_SET(md.ROLE_USER), 0)
    assert auth_state(consumer) == 0
    with pytest.raises(md.ScardError) as both:
        md.CardAuthenticateEx(
            consumer, 1, md.CARD_AUTHENTICATE_SESSION_PIN | md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, token
        )
    assert both.value.code == md.SCARD_E_INVALID_PARAMETER


def test_external_role_needs_no_pin_data_and_returns_a_session_pin(multi: Any) -> None:
    card_data = _cd(multi)
    token, _ = md.CardAuthenticateEx(card_data, FINGER_ROLE, md.CARD_PIN_SILENT_CONTEXT, None)
    assert token and auth_state(card_data) == md.CREATE_PIN_SET(FINGER_ROLE)
    with pytest.raises(md.ScardError) as data:
        md.CardAuthenticateEx(card_data, FINGER_ROLE, 0, b"1234")
    assert data.value.code == md.SCARD_E_INVALID_PARAMETER
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(FINGER_ROLE), 0)
    generated, _ = md.CardAuthenticateEx(
        card_data, FINGER_ROLE, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, None
    )
    assert generated and auth_state(card_data) == 0
    md.CardAuthenticateEx(card_data, FINGER_ROLE, md.CARD_AUTHENTICATE_SESSION_PIN, generated)
    assert auth_state(card_data) == md.CREATE_PIN_SET(FINGER_ROLE)


def test_several_roles_at_once_and_deauthenticate_one(multi: Any) -> None:
    card_data = _cd(multi)
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
    md.CardAuthenticateEx(card_data, FINGER_ROLE, 0, None)
    assert auth_state(card_data) == 0b10010
    md.CardDeauthenticateEx(
        card_data, md.CREATE_PIN_SET(FINGER_ROLE) | 0x01, 0
    )  # the everyone bit is ignored
    assert auth_state(card_data) == 0b00010
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    assert auth_state(card_data) == 0


def test_signature_pin_container(multi: Any) -> None:
    """Container 1 (9C) belongs to the signature PIN (role 3): role 1 alone is not enough."""
    card_data = _cd(multi)
    assert md.dword(md.CardGetContainerProperty(card_data, 1, md.CCP_PIN_IDENTIFIER)) == SIGN_PIN_ROLE
    md.CardAuthenticateEx(card_data, SIGN_PIN_ROLE, 0, b"654321")
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(SIGN_PIN_ROLE), 0)
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
    with pytest.raises(md.ScardError) as locked:
        _sign_ecdsa(card_data, 1)
    assert locked.value.code == md.SCARD_W_SECURITY_VIOLATION
    md.CardAuthenticateEx(card_data, SIGN_PIN_ROLE, 0, b"654321")
    assert auth_state(card_data) == 0b01010  # both bits
    assert len(_sign_ecdsa(card_data, 1)) == 64
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(SIGN_PIN_ROLE), 0)
    assert auth_state(card_data) == 0b00010  # just one cleared
    with pytest.raises(md.ScardError) as again:
        _sign_ecdsa(card_data, 1)
    assert again.value.code == md.SCARD_W_SECURITY_VIOLATION


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_idle_reset_is_reported_once_and_the_layer_recovers() -> None:
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    keys = PivProvisioner(InProcessConnection(virtual.card)).provision({0x9A: "rsa2048"})
    clock = Clock()
    card_data = _cd(virtual, idle_reset_seconds=5.0, clock=clock)
    digest = hashlib.sha256(b"x").digest()
    with pytest.raises(md.ScardError), card_data.transaction():
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
        clock.now += 6  # the caller holds the transaction and does nothing for 6 s
        md.CardSignData(card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest))
    assert card_data.hScard is not None and card_data.hScard.rm.resets == 1
    # Next call: reconnect + re-select; the PIN status is gone, as after any reset.
    assert md.CardReadFile(card_data, None, "cardid")
    assert auth_state(card_data) == 0
    with pytest.raises(md.ScardError) as locked:
        md.CardSignData(card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest))
    assert locked.value.code == md.SCARD_W_SECURITY_VIOLATION
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
    signature = md.CardSignData(
        card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest)
    )
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    keys[0x9A].verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    virtual.close()


def _idle_reset_after_a_session_pin(virtual: Any) -> tuple[md.CardData, bytes]:
    """Generate a user session PIN through the layer, then let a held transaction idle into a reset.

    The reset is the real one: the resource-manager model warm-resets the card through
    the in-process transport (vpcd's control code 02), nothing stands in for the card.
    """
    clock = Clock()
    card_data = md.CardData.from_connection(
        InProcessConnection(virtual.card), idle_reset_seconds=5.0, clock=clock, cache=GlobalCache()
    )
    md.CardAcquireContext(card_data, 0)
    token, _ = md.CardAuthenticateEx(
        card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, b"123456"
    )
    assert token is not None
    md.CardAuthenticateEx(card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, token)
    assert card_data.session_pin_cache == {md.ROLE_USER: token}
    assert virtual.security.session_pin_count(md.ROLE_USER) == 1
    with pytest.raises(md.ScardError) as reset, card_data.transaction():
        clock.now += 6  # the caller holds the transaction and does nothing for 6 s
        md.CardReadFile(card_data, None, "cardid")
    assert reset.value.code == md.SCARD_W_RESET_CARD
    assert card_data.hScard is not None and card_data.hScard.rm.resets == 1
    return card_data, token


def test_recovery_re_authenticates_from_the_cached_session_pin(multi: Any) -> None:
    """multi-pin keeps session PINs across a warm reset (spec: "at least until a cold reset")."""
    assert multi.profile.session_pins_survive_warm_reset
    card_data, token = _idle_reset_after_a_session_pin(multi)
    # The next call recovered: reconnect, re-select, and the session PIN (never a PIN) re-presented.
    assert auth_state(card_data) == 0x02
    ctx = card_data.pvVendorSpecific
    assert ctx is not None and ctx.recoveries == 1
    assert card_data.session_pin_cache == {md.ROLE_USER: token}
    digest = hashlib.sha256(b"x").digest()
    signature = md.CardSignData(
        card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest)
    )
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    multi.keys[0x9A].verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    # A cold reset (power cycle) still ends the session PIN.
    multi.card.power_off()
    multi.card.power_on()
    assert multi.security.session_pin_count(md.ROLE_USER) == 0


def test_without_the_profile_setting_a_warm_reset_ends_session_pins() -> None:
    """The default (session PINs last "until card reset or power-off"): nothing to recover from."""
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    try:
        PivProvisioner(InProcessConnection(virtual.card)).provision({0x9A: "rsa2048"})
        assert not virtual.profile.session_pins_survive_warm_reset
        card_data, _ = _idle_reset_after_a_session_pin(virtual)
        assert auth_state(card_data) == 0
        assert card_data.session_pin_cache == {}  # refused by the card, dropped by the layer
        assert virtual.security.session_pin_count(md.ROLE_USER) == 0
    finally:
        virtual.close()


def test_no_recovery_for_roles_whose_policy_forbids_caching(multi: Any) -> None:
    clock = Clock()
    card_data = md.CardData.from_connection(
        InProcessConnection(multi.card), idle_reset_seconds=5.0, clock=clock, cache=GlobalCache()
    )
    md.CardAcquireContext(card_data, 0)
    md.CardAuthenticateEx(card_data, FINGER_ROLE, 0, None)  # cache policy "none"
    assert FINGER_ROLE not in card_data.session_pin_cache
    with pytest.raises(md.ScardError), card_data.transaction():
        clock.now += 6
        md.CardReadFile(card_data, None, "cardid")
    assert auth_state(card_data) == 0


def test_traffic_log_hides_pins_and_session_pins(multi: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The APDU trace must never show a PIN, nor a session PIN (it authenticates from any process)."""
    caplog.set_level(TRAFFIC, logger="vcard.host")
    card_data = _cd(multi)
    token, _ = md.CardAuthenticateEx(
        card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, b"123456"
    )
    assert token
    md.CardAuthenticateEx(_cd(multi), md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, token)
    trace = caplog.text.lower()
    assert " 805c" in trace and " 805d" in trace  # the session-PIN commands were traced
    assert b"123456".hex() not in trace
    assert token.hex() not in trace
    assert "bytes hidden" in trace
