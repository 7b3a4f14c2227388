"""Terminal-server sessions through pcscd: an idle session's transaction is reset, the others go on."""

from __future__ import annotations

import pytest
from conftest import CardFactory

from signin.ts.simulate import pcsc_opener, simulate

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("legacy", [False, True])
def test_sessions_sign_in_through_pcscd_while_one_idles(start_card: CardFactory, legacy: bool) -> None:
    readers = [start_card("piv", slot).reader for slot in (0, 1)]
    openers = [pcsc_opener(readers, index) for index in range(2)]
    timelines = simulate(openers, sessions=4, hold=2.0, idle_reset_seconds=0.3, legacy=legacy)
    holder, *users = timelines
    assert [t.outcome for t in users] == ["signed in"] * 3, timelines
    assert [t.card for t in users] == [1, 2, 1]
    # pcscd's own transaction was ended by the reset: the holder learns of it at its next call
    assert holder.outcome.startswith("W_RESET_CARD"), holder
    if legacy:
        assert users[1].wait > 0.0  # the other card too: the session-unaware cache lock
    else:
        assert users[1].wait == 0.0
