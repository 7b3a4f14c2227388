"""Crash safety: kill -9 a card process during state writes, over and over.

The state must always load, and no retry counter may ever go back up: the value
on disk is at most the last value the process reported as saved (a save is
durable before the card answers) and at least that minus one (only the single
in-flight write may be lost), and it never exceeds a value loaded earlier.
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

from vcard.store import StateStore

START = 1_000_000
ITERATIONS = 30
SEED = 20240602

# The card process: decrement, save, and only then report the value (like a card
# that commits a failed PIN try before answering 63Cx). The padding makes each
# write big enough that kills land inside writes, not only between them.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vcard.store import StateStore

    store = StateStore(Path(sys.argv[1]))
    document = store.open()
    if document is None:
        document = {"schema": 1, "security": {"tries": int(sys.argv[2])}, "padding": "x" * 65536}
    while True:
        document["security"]["tries"] -= 1
        store.save(document)
        sys.stdout.write(f"{document['security']['tries']}\\n")
        sys.stdout.flush()
    """
)


def load_counter(directory: Path) -> int:
    with StateStore(directory) as store:
        document = store.open()  # raises StateError if a kill left a torn state
    assert document is not None
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    tries = document["security"]["tries"]
    assert isinstance(tries, int)
    return tries


def run_and_kill(directory: Path, rng: random.Random) -> int | None:
    """Start the card process, let it write for a random moment, kill -9 it; the last value it reported."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), str(START)],
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


def test_kill_during_writes_never_tears_state_or_gives_a_try_back(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "card"
    lowest_loaded = START
    for _ in range(ITERATIONS):
        reported = run_and_kill(directory, rng)
        assert reported is not None
        loaded = load_counter(directory)
        assert loaded <= reported, "a value the card answered with was not durable"
        assert loaded >= reported - 1, "more than the one in-flight write was lost"
        assert loaded <= lowest_loaded, "a retry counter went back up"
        lowest_loaded = loaded
    # The card really wrote during the test (guards against a loop that never saves).
    assert lowest_loaded < START - ITERATIONS
