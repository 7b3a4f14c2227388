"""Crash safety: kill -9 a card process during state writes, over and over.

The state must always load, and no retry counter may ever go back up: the value
on disk is at most the last value the process reported as saved (a save is
durable before the card answers) and at least that minus one (only the single
in-flight write may be lost), and it never exceeds a value loaded earlier.

Two layouts: a counter outside `security.roles` (every save rewrites state.json
whole) and a role's `tries_left` (every save after the first rewrites only the
counters record in place).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vcard.store import StateStore

START = 1_000_000
ITERATIONS = 30
SEED = 20240602

# The card process: decrement, save, and only then report the value (like a card
# that commits a failed PIN try before answering 63Cx). The padding makes each
# whole-document write big enough that kills land inside writes, not only between them.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vcard.store import StateStore

    store = StateStore(Path(sys.argv[1]))
    whole = sys.argv[3] == "whole"
    document = store.open()
    if document is None:
        start = int(sys.argv[2])
        security = {"tries": start} if whole else {"roles": {"1": {"tries_left": start}}}
        document = {"schema": 1, "security": security, "padding": "x" * 65536}
    counter = document["security"] if whole else document["security"]["roles"]["1"]
    key = "tries" if whole else "tries_left"
    while True:
        counter[key] -= 1
        store.save(document)
        sys.stdout.write(f"{counter[key]}\\n")
        sys.stdout.flush()
    """
)


def load_counter(directory: Path, layout: str) -> int:
    with StateStore(directory) as store:
        document = store.open()  # raises StateError if a kill left a torn state
    assert document is not None
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    security = document["security"]
    tries = security["tries"] if layout == "whole" else security["roles"]["1"]["tries_left"]
    assert isinstance(tries, int)
    return tries


def run_and_kill(directory: Path, rng: random.Random, layout: str) -> int | None:
    """Start the card process, let it write for a random moment, kill -9 it; the last value it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(START), layout],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    try:
        # Wait for the first answer so the kill lands in the write loop, not in start-up.
        first = child.stdout.readline()
        assert first.endswith(b"\n"), "the card process died before its first save"
        time.sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    lines = (first + rest).split(b"\n")
    complete = [int(line) for line in lines[:-1]]  # lines[-1] is "" or a line cut by the kill
    return complete[-1] if complete else None


@pytest.mark.parametrize("layout", ["whole", "counters"])
def test_kill_during_writes_never_tears_state_or_gives_a_try_back(tmp_path: Path, layout: str) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "card"
    lowest_loaded = START
    for _ in range(ITERATIONS):
        reported = run_and_kill(directory, rng, layout)
        assert reported is not None
        loaded = load_counter(directory, layout)
        assert loaded <= reported, "a value the card answered with was not durable"
        assert loaded >= reported - 1, "more than the one in-flight write was lost"
        assert loaded <= lowest_loaded, "a retry counter went back up"
        lowest_loaded = loaded
    # The card really wrote during the test (guards against a loop that never saves).
    assert lowest_loaded < START - ITERATIONS
    if layout == "counters":
        assert (directory / "counters").stat().st_size < 512  # the tries went to the small record
