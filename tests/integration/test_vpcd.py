"""A `vcard run` card in pcscd's vpcd reader, seen by real clients."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from conftest import CardFactory
from harness import (
    CardProcess,
    card_present,
    opensc_tool,
    pcsc_connection,
    transmit,
    wait_for_presence,
)
from smartcard.scard import SCARD_LEAVE_CARD, SCARD_RESET_CARD

from vcard.control import control_request
from vcard.profile import load_profile

pytestmark = pytest.mark.integration

READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
ISO_AID = bytes.fromhex("F07663617264") + b"\x01"
SELECT_ISO = bytes.fromhex("00A40400") + bytes([len(ISO_AID)]) + ISO_AID
SELECT_ISO_PREFIX = bytes.fromhex("00A4040005") + ISO_AID[:5]
VERIFY_PIN = bytes.fromhex("0020008106") + b"123456"
VERIFY_STATUS = bytes.fromhex("00200081")
# The reader should be empty within 1 s of the card stopping; that figure is measured
# by bench/bench_vpcd.py (tests make no timing assertions). Here: it empties, promptly.
REMOVAL_DEADLINE = 10.0
SWITCH_TIMEOUT = 10.0  # presence changes that have no stated bound: only guards against a hang


def reader_line(listing: str, reader: str) -> str:
    for line in listing.splitlines():
        if line.rstrip().endswith(reader):
            return line
    raise AssertionError(f"{reader!r} not in opensc-tool -l output:\n{listing}")


def test_opensc_lists_the_card(iso_card: CardProcess) -> None:
    result = opensc_tool("-l")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.match(r"\s*\d+\s+Yes\s", reader_line(result.stdout, READER0)), result.stdout
    # and only in its own slot
    assert re.match(r"\s*\d+\s+No\s", reader_line(result.stdout, READER1)), result.stdout


def test_opensc_prints_the_profile_atr(iso_card: CardProcess) -> None:
    result = opensc_tool("-r", READER0, "-a")
    assert result.returncode == 0, result.stdout + result.stderr
    expected = load_profile("iso").atr.hex(":")
    assert result.stdout.strip().splitlines()[-1].lower() == expected


def test_pyscard_connect_select_disconnect(iso_card: CardProcess) -> None:
    connection = pcsc_connection(READER0, SCARD_RESET_CARD)
    try:
        assert connection.atr == load_profile("iso").atr
        assert transmit(connection, SELECT_ISO) == (b"", 0x9000)
        assert transmit(connection, SELECT_ISO_PREFIX)[1] == 0x9000
        assert transmit(connection, bytes.fromhex("00A4040005A000000000"))[1] == 0x6A82
    finally:
        connection.close()
    # the card is still there and answers a new connection
    connection = pcsc_connection(READER0, SCARD_RESET_CARD)
    try:
        assert transmit(connection, SELECT_ISO)[1] == 0x9000
    finally:
        connection.close()


def test_reset_clears_security_status(iso_card: CardProcess) -> None:
    connection = pcsc_connection(READER0, SCARD_LEAVE_CARD)
    assert transmit(connection, SELECT_ISO)[1] == 0x9000
    assert transmit(connection, VERIFY_PIN)[1] == 0x9000
    assert transmit(connection, VERIFY_STATUS)[1] == 0x9000
    connection.close()

    # leaving the card as it is keeps the PIN verified: the reset below is what clears it
    connection = pcsc_connection(READER0, SCARD_RESET_CARD)
    assert transmit(connection, VERIFY_STATUS)[1] == 0x9000
    connection.close()

    connection = pcsc_connection(READER0, SCARD_RESET_CARD)
    try:
        assert transmit(connection, SELECT_ISO)[1] == 0x9000
        sw = transmit(connection, VERIFY_STATUS)[1]
        assert sw & 0xFFF0 == 0x63C0, f"{sw:04X}"
    finally:
        connection.close()


def test_sigterm_empties_the_reader_and_restart_brings_it_back(
    start_card: CardFactory,
) -> None:
    card = start_card("iso", 0)
    assert card_present(READER0)
    card.signal(signal.SIGTERM)
    sent = time.monotonic()
    assert wait_for_presence(READER0, present=False, timeout=REMOVAL_DEADLINE), (
        f"reader still has a card {time.monotonic() - sent:.2f} s after SIGTERM. Output:\n{card.output()}"
    )
    assert card.terminate() == 0, card.output()

    again = start_card("iso", 0)  # waits for presence, fails with the output if it never comes
    connection = pcsc_connection(READER0, SCARD_RESET_CARD)
    try:
        assert transmit(connection, SELECT_ISO)[1] == 0x9000
    finally:
        connection.close()
    assert again.process is not None and again.process.poll() is None


def test_two_cards_on_two_slots(start_card: CardFactory) -> None:
    start_card("iso", 0)
    start_card("iso", 1)
    first = pcsc_connection(READER0, SCARD_RESET_CARD)
    second = pcsc_connection(READER1, SCARD_RESET_CARD)
    try:
        assert transmit(first, SELECT_ISO)[1] == 0x9000
        assert transmit(second, SELECT_ISO)[1] == 0x9000
        # two independent cards: verifying on one does not authenticate the other
        assert transmit(first, VERIFY_PIN)[1] == 0x9000
        assert transmit(first, VERIFY_STATUS)[1] == 0x9000
        assert transmit(second, VERIFY_STATUS)[1] & 0xFFF0 == 0x63C0
    finally:
        first.close()
        second.close()


def test_sigusr1_removes_and_sigusr2_inserts(iso_card: CardProcess) -> None:
    iso_card.signal(signal.SIGUSR1)
    assert wait_for_presence(READER0, present=False, timeout=SWITCH_TIMEOUT), iso_card.output()
    iso_card.signal(signal.SIGUSR2)
    assert wait_for_presence(READER0, present=True, timeout=SWITCH_TIMEOUT), iso_card.output()
    connection = pcsc_connection(READER0, SCARD_RESET_CARD)
    try:
        assert transmit(connection, SELECT_ISO)[1] == 0x9000
    finally:
        connection.close()


def test_control_socket_removes_and_inserts(start_card: CardFactory, tmp_path: Path) -> None:
    state = tmp_path / "card"
    card = start_card("iso", 0, ("--state", str(state)))
    control = state / "control.sock"
    assert control.stat().st_mode & 0o777 == 0o600
    assert control_request(control, {"command": "remove"})["ok"] is True
    assert wait_for_presence(READER0, present=False, timeout=SWITCH_TIMEOUT), card.output()
    assert control_request(control, {"command": "insert"})["ok"] is True
    assert wait_for_presence(READER0, present=True, timeout=SWITCH_TIMEOUT), card.output()
    assert card.terminate() == 0, card.output()
    assert not control.exists()
