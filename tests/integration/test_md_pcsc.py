"""The minidriver layer through the real pcscd + vpcd: PIV and GIDS cards in `vcard run` processes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from harness import CardProcess, wait_for_presence

import minidriver as md
from minidriver.cache import GlobalCache
from vcard.host import PcscConnection
from vcard.md_cli import md as md_cli
from vcard.testing.provisioning import PivProvisioner, provision_gids

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


def _one_apdu_signature(card_data: md.CardData, container: int, key_spec: int, key: Any) -> int:
    """Sign in one transaction after VERIFY; the APDUs the signature took (checked against `key`)."""
    digest = hashlib.sha256(b"extended").digest()
    meter = card_data.connection.meter
    with card_data.transaction():
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
        md.CardGetContainerInfo(card_data, container)
        before = meter.apdus
        signature = md.CardSignData(
            card_data, md.CARD_SIGNING_INFO(2, container, key_spec, 0, md.CALG_SHA_256, digest)
        )
        used = meter.apdus - before
        md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    key.verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    return used


def test_extended_apdus_through_vpcd_piv(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    """The piv profile's ATR offers extended Lc/Le: an RSA-2048 signature (256 bytes each way)
    is one GENERAL AUTHENTICATE through pcscd and vpcd, no chain and no GET RESPONSE."""
    card, keys = piv
    card_data = _connect(card, cache=None)
    md.CardAcquireContext(card_data, 0)
    assert md.CardGetContainerInfo(card_data, 0).cbKeyExPublicKey
    assert _one_apdu_signature(card_data, 0, md.AT_KEYEXCHANGE, keys[0x9A]) == 1
    card_data.close()
    short = _connect(card, cache=None, extended=False)  # the same card in short APDUs: chained
    md.CardAcquireContext(short, 0)
    assert _one_apdu_signature(short, 0, md.AT_KEYEXCHANGE, keys[0x9A]) == 3  # 2 blocks + GET RESPONSE
    short.close()


def test_extended_apdus_through_vpcd_gids(gids: tuple[CardProcess, dict[int, Any]]) -> None:
    card, keys = gids
    card_data = _connect(card)  # with the data cache, as the Base CSP: the container comes from it
    md.CardAcquireContext(card_data, 0)
    meter = card_data.connection.meter
    with card_data.transaction():
        md.CardReadFile(card_data, "mscp", "cmapfile")  # masterfile and cmapfile: read once
        before = meter.apdus
        certificate = md.CardReadFile(card_data, "mscp", "kxc00")
        assert len(certificate) > 256 and meter.apdus - before == 1  # no GET RESPONSE
    assert _one_apdu_signature(card_data, 0, md.AT_KEYEXCHANGE, keys[0]) == 2  # MSE SET + PSO
    card_data.close()


def test_cli_against_the_reader(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    card, _keys = piv
    result = CliRunner().invoke(md_cli, ["info", "--reader", card.reader, "--counts"])
    assert result.exit_code == 0, result.output
    assert "0 AT_KEYEXCHANGE rsa-2048 PIN 1" in result.output
    result = CliRunner().invoke(md_cli, ["certificates", "--reader", card.reader])
    assert result.exit_code == 0 and "kxc00" in result.output
