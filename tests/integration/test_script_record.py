"""`vcard run --record`: a yubico-piv-tool session recorded through pcscd replays green.

yubico-piv-tool authenticates with the management key (a challenge-response that
differs on every run) and generates a key (random output), so this is the case
the recorder's replay rule exists for.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vcard.host import InProcessConnection, PcscConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.script.parser import parse_script
from vcard.script.runner import Runner, Status, format_result

pytestmark = pytest.mark.integration


def _yubico_piv_tool(reader: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("yubico-piv-tool")
    if tool is None:
        pytest.fail("yubico-piv-tool is missing: apt-get install -y yubico-piv-tool (make test installs it)")
    return subprocess.run(
        [tool, "-r", reader, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _report(outcome: Any) -> str:
    return "\n".join(format_result(r, verbose=True) for r in outcome.results if r.status is not Status.PASSED)


def test_yubico_piv_tool_session_replays_green(start_card: Any, tmp_path: Path) -> None:
    state = tmp_path / "card"
    VirtualCard.open(load_profile("piv"), state, ephemeral=False).close()
    for copy in ("replay-inproc", "replay-pcsc"):
        shutil.copytree(state, tmp_path / copy)
    recording = tmp_path / "session.apdu"

    card = start_card("piv", 0, ["--state", str(state), "--record", str(recording)])
    generated = _yubico_piv_tool(card.reader, "-a", "generate", "-s", "9a", "-A", "ECCP256")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "BEGIN PUBLIC KEY" in generated.stdout
    status = _yubico_piv_tool(card.reader, "-a", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    card.close()  # SIGTERM: vcard run closes the recorder

    text = recording.read_text()
    assert '${decrypt("3des", MGMT_KEY, WITNESS_' in text, text
    script = parse_script(recording)
    assert len(script.cases) >= 2

    # in-process, against a copy of the starting state
    replay_card = VirtualCard.open(load_profile("piv"), tmp_path / "replay-inproc", ephemeral=False)
    try:
        outcome = Runner(script, InProcessConnection(replay_card.card)).run()
    finally:
        replay_card.close()
    assert outcome.ok and outcome.count(Status.PASSED) == len(script.cases), _report(outcome)

    # and through pcscd again
    replay = start_card("piv", 0, ["--state", str(tmp_path / "replay-pcsc")])
    connection = PcscConnection(replay.reader)
    try:
        outcome = Runner(script, connection).run()
    finally:
        connection.close()
    assert outcome.ok and outcome.count(Status.PASSED) == len(script.cases), _report(outcome)


def test_replay_against_another_card_fails(start_card: Any, tmp_path: Path) -> None:
    """The replay really compares: another card (another CHUID and serial) does not pass."""
    state = tmp_path / "card"
    recording = tmp_path / "session.apdu"
    card = start_card("piv", 0, ["--state", str(state), "--record", str(recording)])
    status = _yubico_piv_tool(card.reader, "-a", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    card.close()
    other = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    try:
        outcome = Runner(parse_script(recording), InProcessConnection(other.card)).run()
    finally:
        other.close()
    assert not outcome.ok
