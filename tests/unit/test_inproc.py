"""The in-process connection: the same card answers, and the counters count."""

from __future__ import annotations

import pytest

from vcard import atr
from vcard.cardos import Card
from vcard.transport.inproc import InProcessConnection

SELECT_MF = bytes.fromhex("00A40000023F00")


def test_transmit_reaches_the_card_and_counts() -> None:
    card = Card(atr.build(b"vcard"), [])
    connection = InProcessConnection(card)
    assert card.powered
    assert connection.atr == card.atr
    assert connection.transmit(SELECT_MF) == b"\x90\x00"
    assert connection.transmit(b"\x00") == b"\x67\x00"
    assert connection.apdus_sent == 2
    assert connection.bytes_sent == len(SELECT_MF) + 1
    assert connection.bytes_received == 4
    connection.reset_counters()
    assert (connection.apdus_sent, connection.bytes_sent, connection.bytes_received) == (0, 0, 0)


def test_power_and_reset_reach_the_card() -> None:
    card = Card(atr.build(b"vcard"), [])
    connection = InProcessConnection(card, power_on=False)
    assert not card.powered
    connection.power_on()
    assert card.powered
    connection.power_off()
    assert not card.powered
    connection.reset()
    assert card.powered


def test_delay_is_validated() -> None:
    with pytest.raises(ValueError, match="delay"):
        InProcessConnection(Card(atr.build(b"vcard"), []), delay=-1)


def test_delay_sleeps_once_per_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("vcard.transport.inproc.time.sleep", slept.append)
    connection = InProcessConnection(Card(atr.build(b"vcard"), []), delay=0.25)
    connection.transmit(SELECT_MF)
    connection.transmit(SELECT_MF)
    assert slept == [0.25, 0.25]
