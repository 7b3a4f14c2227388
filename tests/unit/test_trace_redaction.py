"""The card's `--trace` hides PINs, PUKs, management-key responses and session PINs.

The docs promise these are never logged; `--trace-secrets` is the explicit way to see
them. Each check looks for the secret both as the trace's spaced hex and as plain hex.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

import minidriver as md
from minidriver.cache import GlobalCache
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

PIN = b"123456\xff\xff"  # PIV pads PINs to 8 bytes (SP 800-73-4 part 2 §3.2.1)
PUK = b"12345678"
NEW_PIN = b"654321\xff\xff"
MGMT_RESPONSE = bytes.fromhex("7C0A820811223344AABBCCDD")


def _forms(secret: bytes) -> tuple[str, str]:
    return secret.hex().upper(), secret.hex(" ").upper()


def _assert_hidden(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in text.upper(), f"{form} in trace"


@pytest.fixture
def piv() -> Iterator[VirtualCard]:
    card = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    card.card.power_on()
    yield card
    card.close()


def _pin_traffic(card: VirtualCard) -> list[bytes]:
    answers = []
    for command in (
        bytes.fromhex("00A4040005A000000308"),
        bytes.fromhex("0020008008") + PIN,
        bytes.fromhex("0024008010") + PIN + NEW_PIN,
        bytes.fromhex("002C008010") + PUK + PIN,
        bytes.fromhex("0087039B0C") + MGMT_RESPONSE,
    ):
        answers.append(card.card.transmit(command))
    return answers


def test_trace_hides_pins_puks_and_management_key_responses(
    piv: VirtualCard, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
        answers = _pin_traffic(piv)
    assert answers[1:4] == [b"\x90\x00"] * 3  # the secrets were real and used
    text = caplog.text
    assert "VERIFY" in text and "bytes hidden" in text
    assert "00A4040005A000000308" in text  # what is not secret stays readable
    _assert_hidden(text, PIN, PUK, NEW_PIN, MGMT_RESPONSE)


def test_trace_secrets_shows_them_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    card = VirtualCard.open(load_profile("piv"), None, ephemeral=True, trace_secrets=True)
    card.card.power_on()
    try:
        with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
            _pin_traffic(card)
    finally:
        card.close()
    assert PIN.hex(" ").upper() in caplog.text.upper()


def test_trace_hides_session_pins_in_commands_and_answers(caplog: pytest.LogCaptureFixture) -> None:
    virtual = VirtualCard.open(load_profile("multi-pin"), None, ephemeral=True)
    try:
        card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
        md.CardAcquireContext(card_data, 0)
        with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
            token, _ = md.CardAuthenticateEx(
                card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_GENERATE_SESSION_PIN, PIN[:6]
            )
            md.CardAuthenticateEx(card_data, md.ROLE_USER, md.CARD_AUTHENTICATE_SESSION_PIN, token)
    finally:
        virtual.close()
    assert token
    assert "80 5C" in caplog.text.upper() or "805C" in caplog.text.upper()
    _assert_hidden(caplog.text, PIN, token)


def _vcard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from vcard.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_apdu_trace_hides_the_pin_and_trace_secrets_shows_it() -> None:
    verify = (bytes.fromhex("0020008008") + PIN).hex()
    select = "00A4040005A000000308"
    hidden = _vcard("apdu", "--ephemeral", "--trace", select, verify)
    assert hidden.returncode == 0, hidden.stderr
    assert "bytes hidden" in hidden.stderr
    _assert_hidden(hidden.stderr, PIN)
    shown = _vcard("apdu", "--ephemeral", "--trace-secrets", select, verify)
    assert shown.returncode == 0, shown.stderr
    assert PIN.hex(" ").upper() in shown.stderr.upper()
