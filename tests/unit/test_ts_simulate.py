"""`vcard ts simulate`: the terminal-server scenario on in-process cards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from signin.ts.simulate import inprocess_opener, simulate
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.ts_cli import ts


@pytest.fixture
def endpoints() -> Iterator[list[object]]:
    cards = [VirtualCard.open(load_profile("piv"), None, ephemeral=True) for _ in range(2)]
    yield [card.card for card in cards]
    for card in cards:
        card.close()


def test_with_the_fix_only_sessions_on_the_held_card_wait_and_everyone_signs_in(
    endpoints: list[object],
) -> None:
    openers = [inprocess_opener(endpoints, index) for index in range(2)]  # type: ignore[arg-type]
    timelines = simulate(openers, sessions=4, hold=1.0, idle_reset_seconds=0.2)
    holder, *users = timelines
    assert holder.outcome.startswith("W_RESET_CARD")  # its idle transaction was reset under it
    assert [t.outcome for t in users] == ["signed in"] * 3
    assert [t.card for t in users] == [1, 2, 1]
    assert users[1].wait == 0.0  # alone on the other card: it never waited for anyone


def test_legacy_makes_every_session_wait_on_every_card(endpoints: list[object]) -> None:
    openers = [inprocess_opener(endpoints, index) for index in range(2)]  # type: ignore[arg-type]
    timelines = simulate(openers, sessions=3, hold=1.0, idle_reset_seconds=0.2, legacy=True)
    users = timelines[1:]
    assert [t.outcome for t in users] == ["signed in"] * 2
    assert {t.card for t in users} == {1, 2} and all(t.wait > 0.0 for t in users)


def test_the_command_prints_one_row_per_session() -> None:
    result = CliRunner().invoke(
        ts, ["simulate", "--sessions", "3", "--cards", "2", "--hold", "0.3", "--idle-reset", "0.1"]
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert rows[1][-2:] == ["signed", "in"] and rows[2][-2:] == ["signed", "in"]


def test_one_session_is_refused_with_a_clear_message() -> None:
    result = CliRunner().invoke(ts, ["simulate", "--sessions", "1"])
    assert result.exit_code == 2 and "--sessions" in result.output
