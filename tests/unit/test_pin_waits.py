"""External-PIN waits: the card's state stays readable, commands stay serialised, and a
failing PIN source never costs the user a try."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vcard.apdu import SW, ISOError, ResponseAPDU
from vcard.cli import _register_control, main
from vcard.control import ControlServer
from vcard.profile import PROFILE_DIR, load_profile
from vcard.runtime import VirtualCard
from vcard.security import ExternalDecision, ExternalPinSource

FINGERPRINT = 4  # the external role of the multi-pin profile
VERIFY_EXTERNAL = bytes.fromhex("805E000410")
GET_PIN_SET = bytes.fromhex("805B000001")


class BrokenSource(ExternalPinSource):
    """A PIN pad driver that fails while the user is being asked."""

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, role: int, timeout: float) -> ExternalDecision:
        self.calls += 1
        raise OSError("the reader went away")


def operator_profile(tmp_path: Path) -> Path:
    """The multi-pin profile with its fingerprint answered by an operator (`vcard pinpad`)."""
    text = (PROFILE_DIR / "multi-pin.toml").read_text()
    simulated = 'policy = "approve_after"\ndelay_ms = 50\ntimeout_s = 5'
    assert simulated in text
    path = tmp_path / "multi-pin.toml"
    path.write_text(text.replace(simulated, 'policy = "operator"\ntimeout_s = 30'))
    return path


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[VirtualCard, Path]]:
    """A card with its control socket, as `vcard run` serves it (without vpcd)."""
    state = tmp_path / "card"
    card = VirtualCard.open(load_profile(str(operator_profile(tmp_path))), state)
    server = ControlServer(state / "control.sock")
    _register_control(server, card, link=None)
    server.start()
    card.card.power_on()
    try:
        yield card, state
    finally:
        server.stop()
        card.close()


def stored_tries(state: Path, role: int) -> int:
    document = json.loads((state / "state.json").read_text())
    tries: int = document["security"]["roles"][str(role)]["tries_left"]
    return tries


def in_thread(card: VirtualCard, command: bytes, answers: dict[str, bytes], key: str) -> threading.Thread:
    def send() -> None:
        answers[key] = card.card.transmit(command)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def wait_for_pending(card: VirtualCard) -> None:
    deadline = time.monotonic() + 5
    while not card.security.operator.pending_roles():
        assert time.monotonic() < deadline, "the VERIFY EXTERNAL never started waiting"
        time.sleep(0.01)


def test_info_answers_while_a_verify_waits_for_the_operator(running: tuple[VirtualCard, Path]) -> None:
    card, state = running
    answers: dict[str, bytes] = {}
    verify = in_thread(card, VERIFY_EXTERNAL, answers, "verify")
    wait_for_pending(card)
    result = CliRunner().invoke(main, ["info", "--state", str(state), "--json"], catch_exceptions=False)
    # Before, `info` waited 5 s for the card lock, then failed with "in use".
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.output)
    fingerprint = next(r for r in summary["security"]["roles"] if r["role"] == FINGERPRINT)
    assert fingerprint["authenticated"] is False and fingerprint["tries_left"] == 4  # the try is held
    result = CliRunner().invoke(main, ["pinpad", "--state", str(state), "approve"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    verify.join(5)
    answer = ResponseAPDU.parse(answers["verify"])
    assert answer.sw == 0x9000 and len(answer.data) == 16  # the session PIN
    assert stored_tries(state, FINGERPRINT) == 5


def test_other_commands_wait_for_the_verify_as_on_a_real_card(running: tuple[VirtualCard, Path]) -> None:
    card, state = running
    answers: dict[str, bytes] = {}
    verify = in_thread(card, VERIFY_EXTERNAL, answers, "verify")
    wait_for_pending(card)
    other = in_thread(card, GET_PIN_SET, answers, "other")
    other.join(0.5)
    assert other.is_alive() and "other" not in answers  # single-threaded: it waits for the answer
    CliRunner().invoke(main, ["pinpad", "--state", str(state), "approve"], catch_exceptions=False)
    verify.join(5)
    other.join(5)
    assert ResponseAPDU.parse(answers["verify"]).sw == 0x9000
    # The command that waited runs after the VERIFY: the fingerprint's bit is set.
    assert ResponseAPDU.parse(answers["other"]) == (bytes([1 << FINGERPRINT]), 0x9000)


def test_a_failing_external_source_costs_no_try(running: tuple[VirtualCard, Path]) -> None:
    card, state = running
    broken = BrokenSource()
    card.security.set_external_source(FINGERPRINT, broken)
    before = stored_tries(state, FINGERPRINT)
    with pytest.raises(ISOError) as error:
        card.security.verify_external(FINGERPRINT)
    assert broken.calls == 1
    assert error.value.sw == SW.NO_PRECISE_DIAGNOSIS
    assert card.security.tries_left(FINGERPRINT) == before
    assert stored_tries(state, FINGERPRINT) == before
    # The same through the card: a 6F00 answer, and still no try lost.
    assert card.card.transmit(VERIFY_EXTERNAL) == b"\x6f\x00"
    assert broken.calls == 2
    assert stored_tries(state, FINGERPRINT) == before
    assert not card.security.is_authenticated(FINGERPRINT)
