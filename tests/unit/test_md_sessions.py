"""Terminal-server sessions in the resource-manager model: waiting, the five-second rule, cache scope.

Sessions are threads sharing one `ResourceManagerHub`. The idle rule is shortened to a
fraction of a second; waits that must end are bounded by a generous guard, and a wait that
must not end is checked only where nothing but the holder can end it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

import minidriver as md
from minidriver.cache import GlobalCache
from minidriver.rm import ResourceManagerHub, Session
from signin.ts.simulate import retry_after_reset
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

IDLE = 0.3
GUARD = 20.0  # only bounds a wait that must end; never reached when the behaviour is right


@pytest.fixture
def cards() -> Iterator[list[VirtualCard]]:
    opened = [VirtualCard.open(load_profile("piv"), None, ephemeral=True) for _ in range(2)]
    yield opened
    for card in opened:
        card.close()


def _context(card: VirtualCard, session: int, hub: ResourceManagerHub, cache: GlobalCache) -> md.CardData:
    card_data = md.CardData.inprocess(card.card, session=Session(session), hub=hub, cache=cache)
    retry_after_reset(card_data, lambda: md.CardAcquireContext(card_data, 0))
    return card_data


class Holder:
    """Session 1: opens a transaction on a card and idles until told to end it."""

    def __init__(self, card: VirtualCard, hub: ResourceManagerHub, cache: GlobalCache) -> None:
        self.card_data = _context(card, 1, hub, cache)
        self.release = threading.Event()
        self.outcome: list[object] = []
        self.holding = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.holding.wait(GUARD)

    def _run(self) -> None:
        handle = self.card_data.hScard
        assert handle is not None
        handle.begin_transaction()
        self.holding.set()
        self.release.wait(GUARD)
        try:
            handle.end_transaction()
            self.outcome.append("ended")
        except md.ScardError as error:
            self.outcome.append(error.code)

    def finish(self) -> list[object]:
        self.release.set()
        self.thread.join(GUARD)
        return self.outcome


def _sign_in_threads(
    work: list[Callable[[], None]],
) -> tuple[list[threading.Event], list[BaseException]]:
    done = [threading.Event() for _ in work]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            work[index]()
        except BaseException as error:  # reported by the test
            errors.append(error)
        done[index].set()

    for index in range(len(work)):
        threading.Thread(target=run, args=(index,), daemon=True).start()
    return done, errors


def _reads_the_container_map(card: VirtualCard, session: int, hub: ResourceManagerHub) -> Callable[[], None]:
    def work() -> None:
        card_data = _context(card, session, hub, GlobalCache())
        retry_after_reset(card_data, lambda: md.CardReadFile(card_data, "mscp", "cmapfile"))
        md.CardDeleteContext(card_data)

    return work


def test_an_idle_holder_is_reset_and_the_waiting_sessions_go_on(cards: list[VirtualCard]) -> None:
    hub = ResourceManagerHub(idle_reset_seconds=IDLE)
    holder = Holder(cards[0], hub, GlobalCache())
    work = [_reads_the_container_map(cards[index % 2], 2 + index, hub) for index in range(7)]
    done, errors = _sign_in_threads(work)
    for event in done:
        assert event.wait(GUARD), "a session was still blocked by another session's idle transaction"
    assert not holder.release.is_set()  # every session finished while the holder still idled
    assert errors == []
    # the idle holder learns of the reset at its next call, as on Windows 8+
    assert holder.finish() == [md.Scard.W_RESET_CARD]


def test_legacy_cache_lock_blocks_every_session_on_every_card(cards: list[VirtualCard]) -> None:
    hub = ResourceManagerHub(idle_reset_seconds=IDLE, legacy=True)
    holder = Holder(cards[0], hub, GlobalCache())
    work = [_reads_the_container_map(cards[index % 2], 2 + index, hub) for index in range(7)]
    done, errors = _sign_in_threads(work)
    # nothing but the holder can release the process-wide lock: five idle periods later, no
    # session has got through (with the fix, all would have long before)
    assert not done[0].wait(5 * IDLE)
    assert not any(event.is_set() for event in done)
    holder.finish()
    for event in done:
        assert event.wait(GUARD)
    assert errors == []


def test_a_session_on_another_card_never_waits_with_the_fix(cards: list[VirtualCard]) -> None:
    hub = ResourceManagerHub(idle_reset_seconds=None)  # no idle rule: only the fix can let it through
    holder = Holder(cards[0], hub, GlobalCache())
    done, errors = _sign_in_threads([_reads_the_container_map(cards[1], 2, hub)])
    assert done[0].wait(GUARD) and errors == []
    assert holder.finish() == ["ended"]


class WatchedCache(GlobalCache):
    """The process cache, remembering every lookup: (key, found)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[tuple[bytes, bool]] = []

    def lookup(self, card_id: bytes, name: str) -> bytes | None:
        item = super().lookup(card_id, name)
        self.lookups.append((card_id, item is not None))
        return item


@pytest.mark.parametrize("legacy", [False, True])
def test_cached_data_never_crosses_sessions(legacy: bool) -> None:
    card = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    store = WatchedCache()
    hub = ResourceManagerHub(idle_reset_seconds=IDLE, legacy=legacy)
    try:
        first = _context(card, 1, hub, store)
        md.CardReadFile(first, "mscp", "cmapfile")
        first_items = len(store)
        assert first_items > 0
        store.lookups.clear()
        second = _context(card, 2, hub, store)
        md.CardReadFile(second, "mscp", "cmapfile")
        found = [key for key, hit in store.lookups if hit]
        if legacy:  # the pre-hotfix cache: session 2 is served what session 1 cached
            assert found and len(store) == first_items
        else:
            assert found == [] and len(store) == 2 * first_items
            assert all(key.startswith(second.cache_scope) for key, _hit in store.lookups)
            assert first.cache_scope != second.cache_scope
    finally:
        card.close()
