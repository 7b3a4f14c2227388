"""Resource-manager model: transactions, the idle reset, reset reporting; the freshness cache."""

from __future__ import annotations

import pytest

from minidriver import CARD_CACHE_FILE_FORMAT, Scard, ScardError
from minidriver.cache import Freshness, FreshnessCache, GlobalCache
from minidriver.rm import ResourceManager
from vcard.host import Connection, Disposition


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class EchoTransport(Connection):
    """Answers 9000 to everything and records resets."""

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    @property
    def atr(self) -> bytes:
        return bytes.fromhex("3B80800101")

    def _transmit(self, apdu: bytes) -> bytes:
        return b"\x90\x00"

    def _begin_transaction(self) -> None:
        pass

    def _end_transaction(self, disposition: Disposition) -> None:
        if disposition is Disposition.RESET_CARD:
            self.resets += 1

    def _reconnect(self, initialization: Disposition) -> None:
        if initialization is Disposition.RESET_CARD:
            self.resets += 1

    def _close(self, disposition: Disposition) -> None:
        pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_idle_transaction_resets_the_card_and_the_next_call_sees_reset_card(clock: FakeClock) -> None:
    transport = EchoTransport()
    rm = ResourceManager(transport, idle_reset_seconds=5.0, clock=clock)
    handle = rm.connect()
    handle.begin_transaction()
    handle.transmit(b"\x00\xa4\x04\x00")
    clock.now += 4.9
    handle.transmit(b"\x00\xa4\x04\x00")  # activity restarts the timer
    clock.now += 4.9
    handle.transmit(b"\x00\xa4\x04\x00")
    assert transport.resets == 0
    clock.now += 5.1
    with pytest.raises(ScardError) as raised:
        handle.transmit(b"\x00\xa4\x04\x00")
    assert raised.value.code == Scard.W_RESET_CARD
    assert transport.resets == 1
    with pytest.raises(ScardError) as again:
        handle.begin_transaction()
    assert again.value.code == Scard.W_RESET_CARD  # until the handle reconnects
    handle.reconnect()
    handle.begin_transaction()
    handle.transmit(b"\x00")
    handle.end_transaction()


def test_no_reset_without_a_transaction_or_with_the_rule_disabled(clock: FakeClock) -> None:
    transport = EchoTransport()
    handle = ResourceManager(transport, 5.0, clock).connect()
    handle.transmit(b"\x00")
    clock.now += 60
    handle.transmit(b"\x00")
    disabled = ResourceManager(transport, None, clock).connect()
    disabled.begin_transaction()
    clock.now += 60
    disabled.transmit(b"\x00")
    assert transport.resets == 0


def test_ending_an_idle_transaction_reports_the_reset(clock: FakeClock) -> None:
    transport = EchoTransport()
    handle = ResourceManager(transport, 0.5, clock).connect()
    handle.begin_transaction()
    clock.now += 1
    with pytest.raises(ScardError) as raised:
        handle.end_transaction()
    assert raised.value.code == Scard.W_RESET_CARD and transport.resets == 1


def test_a_reset_by_one_handle_is_reported_to_the_others_only(clock: FakeClock) -> None:
    transport = EchoTransport()
    rm = ResourceManager(transport, 5.0, clock)
    first, second = rm.connect(), rm.connect()
    first.begin_transaction()
    first.end_transaction(Disposition.RESET_CARD)
    first.transmit(b"\x00")
    with pytest.raises(ScardError) as raised:
        second.transmit(b"\x00")
    assert raised.value.code == Scard.W_RESET_CARD


def test_transactions_exclude_other_handles(clock: FakeClock) -> None:
    rm = ResourceManager(EchoTransport(), 5.0, clock)
    first, second = rm.connect(), rm.connect()
    first.begin_transaction()
    first.begin_transaction()  # nested
    with pytest.raises(ScardError) as raised:
        second.transmit(b"\x00")
    assert raised.value.code == Scard.E_SHARING_VIOLATION
    first.end_transaction()
    assert first.in_transaction
    first.end_transaction()
    second.transmit(b"\x00")


def test_freshness_cache_serves_only_while_the_counter_is_unchanged() -> None:
    store = GlobalCache()
    card = b"\x01" * 16
    view = FreshnessCache(store, card, CARD_CACHE_FILE_FORMAT(1, 0, 5, 7))
    view.put("Cached_GeneralFile/mscp/kxc00", b"cert")
    assert view.get(Freshness.FILES, "Cached_GeneralFile/mscp/kxc00") == b"cert"
    # Another transaction after a container change: files still fresh.
    later = FreshnessCache(store, card, CARD_CACHE_FILE_FORMAT(1, 0, 6, 7))
    assert later.get(Freshness.FILES, "Cached_GeneralFile/mscp/kxc00") == b"cert"
    # A file write elsewhere bumped wFilesFreshness: stale, and dropped.
    stale = FreshnessCache(store, card, CARD_CACHE_FILE_FORMAT(1, 0, 6, 8))
    assert stale.get(Freshness.FILES, "Cached_GeneralFile/mscp/kxc00") is None
    assert store.lookup(card, "Cached_GeneralFile/mscp/kxc00") is None


def test_cache_is_keyed_by_card_id() -> None:
    store = GlobalCache()
    cf = CARD_CACHE_FILE_FORMAT()
    FreshnessCache(store, b"\x01" * 16, cf).put("x", b"one")
    assert FreshnessCache(store, b"\x02" * 16, cf).get(Freshness.FILES, "x") is None
    assert FreshnessCache(store, b"\x01" * 16, cf).get(Freshness.FILES, "x") == b"one"


def test_cache_items_that_do_not_parse_are_misses_and_the_store_forgets_on_request() -> None:
    store = GlobalCache()
    card = b"\x03" * 16
    view = FreshnessCache(store, card, CARD_CACHE_FILE_FORMAT(1, 2, 0, 0))
    view.put("Cached_VendorCapabilities", b"roles")
    assert view.get(Freshness.PINS, "Cached_VendorCapabilities") == b"roles"
    store.add(card, "short", b"\x01\x02")  # shorter than a stamp and a length
    store.add(card, "truncated", CARD_CACHE_FILE_FORMAT(1, 2, 0, 0).pack() + b"\x09\x00\x00\x00abc")
    assert view.get(Freshness.FILES, "short") is None
    assert view.get(Freshness.FILES, "truncated") is None and store.lookup(card, "truncated") is None
    assert (view.hits, view.misses) == (1, 2)
    view.forget("Cached_VendorCapabilities")
    assert view.get(Freshness.PINS, "Cached_VendorCapabilities") is None
    assert len(store) == 1  # only "short" is left
    store.delete(card, "short")
    store.delete(card, "never there")
    assert len(store) == 0
    view.put("x", b"y")
    store.clear()
    assert len(store) == 0 and store.lookup(card, "x") is None
