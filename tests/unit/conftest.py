"""Fixtures shared by the minidriver entry-point tests (tests/unit/test_md_*.py).

One provisioned in-process card per test module: provisioning (key generation) is the slow part, and
each test opens its own CARD_DATA with a private cache, so tests in a module do not see each other's
cache entries. A module whose tests change the card beyond what others expect defines its own fixture
of the same name with function scope.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from md_support import Card, gids_card, piv_card


@pytest.fixture(scope="module")
def piv() -> Iterator[Card]:
    card = piv_card()
    yield card
    card.virtual.close()


@pytest.fixture(scope="module")
def gids() -> Iterator[Card]:
    card = gids_card()
    yield card
    card.virtual.close()
