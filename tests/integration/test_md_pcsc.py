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


def test_cli_against_the_reader(piv: tuple[CardProcess, dict[int, Any]]) -> None:
    card, _keys = piv
    result = CliRunner().invoke(md_cli, ["info", "--reader", card.reader, "--counts"])
    assert result.exit_code == 0, result.output
    assert "0 AT_KEYEXCHANGE rsa-2048 PIN 1" in result.output
    result = CliRunner().invoke(md_cli, ["certificates", "--reader", card.reader])
    assert result.exit_code == 0 and "kxc00" in result.output
