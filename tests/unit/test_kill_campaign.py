"""A few dozen kill -9s of the reliability campaign (scripts/reliability.py) on every `make test`.

A worker process runs VERIFY (wrong and right PIN), CHANGE REFERENCE DATA and PUT
DATA on a PIV and a GIDS state with retry counters on disk, and is killed at a
random moment; after each kill the state must open, no try may have come back and
the data object must hold its old or its new value. `make reliability ARGS="--only
kills --kills 1000"` runs the full campaign.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

KILLS = 24
SEED = 20261206


def load_campaign() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "reliability.py"
    spec = importlib.util.spec_from_file_location("vcard_reliability_campaign", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_kill_9_during_pin_and_data_commands_never_gives_a_try_back(tmp_path: Path) -> None:
    campaign = load_campaign()
    counts, tally = campaign.Counts(), campaign.KillTally()
    campaign.kills(counts, KILLS, random.Random(SEED), tmp_path, ("piv", "gids"), tally)
    assert counts.kills == KILLS
    assert counts.regained == 0, counts.notes
    assert counts.corrupt == 0, counts.notes
    assert not counts.notes, counts.notes  # e.g. a worker that died before its first operation
    assert sum(tally.during.values()) == KILLS
    for card in ("piv", "gids"):
        landed = {key.split(" ", 1)[1] for key in tally.during if key.startswith(f"{card} ")}
        # The kills land inside the cycle, not always in its first command.
        assert len(landed) >= 2, tally.during
