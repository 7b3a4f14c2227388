"""kill -9 between a PIN try and its answer: after a restart the try is still consumed.

A child process opens a real StateStore and a SecurityCore whose commit kills
the process (SIGKILL) right after the durable save of the decremented counter,
i.e. before the PIN is compared and before any answer. The parent reopens the
state: the try must be gone, and the card must still work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vcard.security import Charset, RoleConfig, RoleType, SecurityCore
from vcard.store import CardState, StateStore

ROLE = RoleConfig(1, "user", RoleType.PIN, b"123456", 6, 8, Charset.DIGITS, 3)

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from vcard.security import Charset, RoleConfig, RoleType, SecurityCore
    from vcard.store import CardState, StateStore

    directory, pin, mode = Path(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
    store = StateStore(directory)
    document = store.open()
    is_new = document is None
    if document is None:
        document = CardState.new_document("crash", directory / "crash.toml")
    state = CardState(store, document, is_new)
    armed = False

    def commit():
        state.commit()                      # the real, durable save
        if armed:
            os.kill(os.getpid(), signal.SIGKILL)   # die before comparing or answering

    role = RoleConfig(1, "user", RoleType.PIN, b"123456", 6, 8, Charset.DIGITS, 3)
    core = SecurityCore([role], state.section("security"), commit, is_new)
    if is_new:
        state.commit()
    if mode == "kill":
        armed = True
    try:
        core.verify(1, pin)
        print("ANSWER 9000", flush=True)
    except Exception as error:
        print("ANSWER", error, flush=True)
    """
)


def run_child(directory: Path, pin: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), pin, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def tries_on_disk(directory: Path) -> int:
    store = StateStore(directory)
    try:
        document = store.open()
        assert document is not None
        state = CardState(store, document, False)
        core = SecurityCore([ROLE], state.section("security"), state.commit, False)
        return core.tries_left(1)
    finally:
        store.close()


@pytest.mark.parametrize("pin", ["000000", "123456"])
def test_kill_between_the_try_and_the_answer_keeps_the_try_consumed(tmp_path: Path, pin: str) -> None:
    directory = tmp_path / "card"
    setup = run_child(directory, "000000", "normal")  # creates the card; one wrong try answered
    assert setup.returncode == 0, setup.stderr
    assert "63C2" in setup.stdout
    assert tries_on_disk(directory) == 2

    killed = run_child(directory, pin, "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "ANSWER" not in killed.stdout  # the host never learnt anything about this try
    # Wrong or right, the try the dead process took stays taken: a crash never gives one back.
    assert tries_on_disk(directory) == 1

    after = run_child(directory, "123456", "normal")
    assert "ANSWER 9000" in after.stdout, after.stderr
    assert tries_on_disk(directory) == 3
