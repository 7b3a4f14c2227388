"""More than two cards: 16 vpcd readers from `vcard readers`-style stanzas, a private pcscd, one `vcard run`.

Runs scripts/many_cards.py, which works in its own mount and network namespaces so
the machine's pcscd and reader configuration stay exactly as they are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "many_cards.py"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_sixteen_cards_answer_through_pcscd_and_a_seventeenth_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cards", "16"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 cards in one vcard run: 16 answered SELECT through pcscd" in result.stdout
    assert "card 17: Error: card 17 (iso): port 35979 has no vpcd slot" in result.stdout
    assert "KiB per further idle card" in result.stdout
