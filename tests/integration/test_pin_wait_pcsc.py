"""A VERIFY EXTERNAL waiting for `vcard pinpad`, through the real pcscd: `vcard info`
answers at once, and another connection's command waits for the VERIFY's answer (as
with a real card, which is single-threaded), then runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import CardProcess, operator_pin_profile, pcsc_connection, transmit

pytestmark = pytest.mark.integration

READER = "Virtual PCD 00 00"
SELECT_ISO = "00A4040005F076636172"
PIN_PAD = 4


def vcard(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vcard", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def pin_pad_role(state: Path) -> dict[str, Any]:
    info = vcard("info", "--state", str(state), "--json")
    assert info.returncode == 0, info.stderr  # before the fix: "in use" after waiting for the card
    roles: list[dict[str, Any]] = json.loads(info.stdout)["security"]["roles"]
    return next(role for role in roles if role["role"] == PIN_PAD)


@pytest.fixture
def operator_card(tmp_path: Path) -> Iterator[Path]:
    profile = tmp_path / "operator.toml"
    profile.write_text(operator_pin_profile(30))
    state = tmp_path / "state"
    with CardProcess(str(profile), 0, ["--state", str(state)]):
        yield state


def test_info_and_other_connections_during_an_operator_wait(operator_card: Path) -> None:
    from smartcard.scard import SCARD_LEAVE_CARD

    state = operator_card
    waiting = pcsc_connection(READER, disposition=SCARD_LEAVE_CARD)
    other = pcsc_connection(READER, disposition=SCARD_LEAVE_CARD)
    answers: dict[str, tuple[bytes, int]] = {}

    def send(name: str, connection: Any, apdu: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(name, transmit(connection, apdu)))
        thread.start()
        return thread

    try:
        transmit(waiting, SELECT_ISO)
        verify = send("verify", waiting, "805E000410")
        deadline = time.monotonic() + 10
        # The try is taken (and on disk) before the operator is asked: info shows it, at once.
        while pin_pad_role(state)["tries_left"] != 2:
            assert time.monotonic() < deadline, "the VERIFY EXTERNAL never started waiting"
            time.sleep(0.2)
        queued = send("pin_set", other, "805B000001")
        queued.join(1.0)
        assert queued.is_alive(), f"a command ran during the wait: {answers.get('pin_set')}"
        assert pin_pad_role(state)["authenticated"] is False
        approve = vcard("pinpad", "--state", str(state), "approve")
        assert approve.returncode == 0, approve.stderr
        verify.join(10)
        queued.join(10)
        token, sw = answers["verify"]
        assert sw == 0x9000 and len(token) == 16
        # The queued command ran after the VERIFY: it sees the role authenticated.
        assert answers["pin_set"] == (bytes([1 << PIN_PAD]), 0x9000)
        role = pin_pad_role(state)
        assert role["tries_left"] == 3 and role["authenticated"] is True
    finally:
        waiting.close()
        other.close()
