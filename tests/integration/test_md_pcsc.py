"""The minidriver layer through the real pcscd + vpcd: PIV and GIDS cards in `vcard run` processes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from harness import CardProcess, wait_for_presence

import minidriver as md
from minidriver.cache import GlobalCache
from minidriver.cli import md as md_cli
from minidriver.testing import PivProvisioner, opensc_api_sequence, provision_gids
from vcard.host import PcscConnection

pytestmark = pytest.mark.integration

CardFactory = Callable[..., CardProcess]
PIV_SLOTS = {0x9A: "rsa2048", 0x9C: "p256", 0x9D: "p256"}


def _start(start_card: CardFactory, profile: str) -> CardProcess:
    """Start a card on slot 0 once the previous test's card has left the reader (pcscd notices late)."""
    from vcard.transport.vpcd import reader_name

    wait_for_presence(reader_name(0), False, 10.0)
    return start_card(profile, 0)


def _connect(card: CardProcess, **kwargs: Any) -> md.CardData:
    kwargs.setdefault("cache", GlobalCache())
    return md.CardData.connect(card.reader, **kwargs)


@pytest.fixture
def piv(start_card: CardFactory) -> tuple[CardProcess, dict[int, Any]]:
    card = _start(start_card, "piv")
    with PcscConnection(card.reader) as connection:
        keys = PivProvisioner(connection).provision(PIV_SLOTS)  # ends with a card reset
    return card, keys


@pytest.fixture
def gids(start_card: CardFactory) -> tuple[CardProcess, dict[int, Any]]:
    card = _start(start_card, "gids")
    card_data = _connect(card)
    md.CardAcquireContext(card_data, 0)
    keys = provision_gids(card_data)
    md.CardDeleteContext(card_data)
    card_data.close()
    return card, keys


def _sequence(card: CardProcess) -> list[tuple[str, str]]:
    card_data = _connect(card)
    try:
        results = opensc_api_sequence(card_data, b"123456")
    finally:
        card_data.close()
    assert len(results) == 34
    return [(name, detail) for name, ok, detail in results if not ok]


def test_opensc_sequence_on_piv_through_pcscd(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    assert _sequence(piv[0]) == []


def test_opensc_sequence_on_gids_through_pcscd(gids: tuple[CardProcess, dict[int, Any]]) -> None:
    assert _sequence(gids[0]) == []


def test_piv_crypto_through_pcscd(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    card, keys = piv
    card_data = _connect(card)
    md.CardAcquireContext(card_data, 0)
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
    digest = hashlib.sha256(b"pcscd").digest()
    signature = md.CardSignData(
        card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest)
    )
    keys[0x9A].verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    pss = md.CARD_SIGNING_INFO(
        2,
        0,
        md.AT_KEYEXCHANGE,
        md.CARD_PADDING_INFO_PRESENT,
        0,
        digest,
        pPaddingInfo=md.BCRYPT_PSS_PADDING_INFO("SHA256", 32),
        dwPaddingType=md.CARD_PADDING_PSS,
    )
    keys[0x9A].verify(
        md.CardSignData(card_data, pss)[::-1],
        digest,
        padding.PSS(padding.MGF1(hashes.SHA256()), 32),
        utils.Prehashed(hashes.SHA256()),
    )
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")  # 9C is PIN-always: verify right before
    raw = md.CardSignData(card_data, md.CARD_SIGNING_INFO(2, 1, md.AT_ECDSA_P256, pbData=digest))
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    keys[0x9C].verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    ciphertext = keys[0x9A].encrypt(
        b"over pcscd", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    )
    info = md.CARD_RSA_DECRYPT_INFO(
        2,
        0,
        md.AT_KEYEXCHANGE,
        ciphertext[::-1],
        pPaddingInfo=md.BCRYPT_OAEP_PADDING_INFO("SHA256"),
        dwPaddingType=md.CARD_PADDING_OAEP,
    )
    assert md.CardRSADecrypt(card_data, info) == b"over pcscd"
    peer = ec.generate_private_key(ec.SECP256R1())
    numbers = peer.public_key().public_numbers()
    agreement = md.CARD_DH_AGREEMENT_INFO(
        2, 2, 0, pbPublicKey=md.BCRYPT_ECCKEY_BLOB.public("ecdh", 256, numbers.x, numbers.y).pack()
    )
    index = md.CardConstructDHAgreement(card_data, agreement)
    derived = md.CardDeriveKey(
        card_data, md.CARD_DERIVE_KEY(2, 0, "HASH", index, {"KDF_HASH_ALGORITHM": b"SHA256"})
    )
    assert derived == hashlib.sha256(peer.exchange(ec.ECDH(), keys[0x9D])).digest()
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    card_data.close()


def test_gids_crypto_through_pcscd(gids: tuple[CardProcess, dict[int, Any]]) -> None:
    card, keys = gids
    card_data = _connect(card)
    md.CardAcquireContext(card_data, 0)
    md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, b"123456")
    digest = hashlib.sha384(b"gids").digest()
    signature = md.CardSignData(
        card_data, md.CARD_SIGNING_INFO(2, 1, md.AT_SIGNATURE, 0, md.CALG_SHA_384, digest)
    )
    keys[1].verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA384()))
    ciphertext = keys[0].encrypt(b"gids over pcscd", padding.PKCS1v15())
    info = md.CARD_RSA_DECRYPT_INFO(
        2, 0, md.AT_KEYEXCHANGE, ciphertext[::-1], dwPaddingType=md.CARD_PADDING_PKCS1
    )
    assert md.CardRSADecrypt(card_data, info) == b"gids over pcscd"
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    card_data.close()


def test_session_pin_across_two_pcsc_connections(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    card, _keys = piv
    first, second = _connect(card), _connect(card)
    md.CardAcquireContext(first, 0)
    md.CardAcquireContext(second, 0)
    token, _ = md.CardAuthenticateEx(
        first, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, b"123456"
    )
    assert token
    md.CardAuthenticateEx(second, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, token)
    assert md.dword(md.CardGetProperty(second, md.CP_CARD_AUTHENTICATED_STATE)) == 0x02
    md.CardDeauthenticateEx(second, md.PIN_SET_ALL_ROLES, 0)
    first.close()
    second.close()


def test_idle_reset_and_recovery_through_pcscd(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    card, keys = piv
    card_data = _connect(card, idle_reset_seconds=0.3)
    md.CardAcquireContext(card_data, 0)
    digest = hashlib.sha256(b"idle").digest()
    with pytest.raises(md.ScardError) as reset, card_data.transaction():
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
        time.sleep(0.5)  # hold the transaction without touching the card
        md.CardSignData(card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest))
    assert reset.value.code == md.SCARD_W_RESET_CARD
    # Recovered: reconnected, re-selected; the real reset dropped the PIN status.
    assert md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE)) == 0
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
    signature = md.CardSignData(
        card_data, md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest)
    )
    keys[0x9A].verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    card_data.close()


def test_cli_against_the_reader(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    card, _keys = piv
    result = CliRunner().invoke(md_cli, ["info", "--reader", card.reader, "--counts"])
    assert result.exit_code == 0, result.output
    assert "0 AT_KEYEXCHANGE rsa-2048 PIN 1" in result.output
    result = CliRunner().invoke(md_cli, ["certificates", "--reader", card.reader])
    assert result.exit_code == 0 and "kxc00" in result.output
