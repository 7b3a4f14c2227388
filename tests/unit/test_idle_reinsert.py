"""The idle reinsertion timer on a VpcdLink that is not connected: which frames arm it, that it
fires once per idle period, never in the middle of a command, and that `vcard run` takes its
setting from the profile unless --idle-reinsert overrides it."""

from __future__ import annotations

import threading
import time

import pytest

from vcard.profile import load_profile
from vcard.transport.idle_reset import IdleReinsert, attach_idle_reinsert
from vcard.transport.vpcd import VpcdLink

APDU = bytes.fromhex("00A4040000")
LIMIT = 0.2


class CountingLink(VpcdLink):
    """A link that is never started; records remove/insert calls in order."""

    def __init__(self) -> None:
        super().__init__(card=None, name="test")  # type: ignore[arg-type]
        self.calls: list[str] = []
        self.changed = threading.Event()

    def remove(self) -> None:
        super().remove()
        self.calls.append("remove")

    def insert(self) -> None:
        super().insert()
        self.calls.append("insert")
        self.changed.set()


@pytest.fixture
def link() -> CountingLink:
    return CountingLink()


def frame(link: VpcdLink, payload: bytes) -> None:
    for observer in link.observers:
        observer.frame_started(payload)
    for observer in link.observers:
        observer.frame_finished(payload)


def test_an_apdu_then_silence_takes_the_card_out_and_back_in_once(link: CountingLink) -> None:
    watcher = IdleReinsert(link, LIMIT, gap=0.01).attach()
    try:
        started = time.monotonic()
        frame(link, APDU)
        assert link.changed.wait(5)
        assert time.monotonic() - started >= LIMIT
        assert link.calls == ["remove", "insert"] and link.inserted
        time.sleep(LIMIT * 3)  # not again without a new APDU
        assert link.calls == ["remove", "insert"]
        assert watcher.reinsertions == 1 and watcher.due_in() is None
    finally:
        watcher.stop()


def test_control_frames_do_not_count_as_use(link: CountingLink) -> None:
    watcher = IdleReinsert(link, LIMIT).attach()
    try:
        for code in (b"\x01", b"\x04", b"\x02", b"\x00"):  # power on, ATR, reset, power off
            frame(link, code)
        assert watcher.due_in() is None
        time.sleep(LIMIT * 2)
        assert link.calls == []
    finally:
        watcher.stop()


def test_a_power_off_after_use_disarms(link: CountingLink) -> None:
    """pcscd powered the card down (no handle needed it): no transaction can be left to release."""
    watcher = IdleReinsert(link, LIMIT).attach()
    try:
        frame(link, APDU)
        assert watcher.due_in() is not None
        frame(link, b"\x00")
        assert watcher.due_in() is None
        time.sleep(LIMIT * 2)
        assert link.calls == []
    finally:
        watcher.stop()


def test_a_long_command_is_never_cut_and_its_end_restarts_the_count(link: CountingLink) -> None:
    watcher = IdleReinsert(link, LIMIT, gap=0.01).attach()
    try:
        frame(link, APDU)
        watcher.frame_started(APDU)  # e.g. a key generation taking longer than the limit
        time.sleep(LIMIT * 2)
        assert link.calls == []
        watcher.frame_finished(APDU)
        remaining = watcher.due_in()
        assert remaining is not None and remaining > LIMIT / 2
        assert link.changed.wait(5)
    finally:
        watcher.stop()


def test_each_new_use_restarts_the_count(link: CountingLink) -> None:
    watcher = IdleReinsert(link, LIMIT, gap=0.01).attach()
    try:
        for _ in range(4):
            frame(link, APDU)
            time.sleep(LIMIT / 2)
        assert link.calls == []
        assert link.changed.wait(5)
    finally:
        watcher.stop()


def test_stop_detaches_and_ends_the_thread(link: CountingLink) -> None:
    watcher = IdleReinsert(link, LIMIT).attach()
    watcher.stop()
    assert link.observers == []
    frame(link, APDU)
    time.sleep(LIMIT * 2)
    assert link.calls == []


def test_zero_means_off_and_negative_is_refused(link: CountingLink) -> None:
    assert attach_idle_reinsert(link, 0) is None
    assert link.observers == []
    with pytest.raises(ValueError, match="positive number of seconds"):
        IdleReinsert(link, -1)


def test_windows_like_profiles_turn_it_on() -> None:
    assert load_profile("tpm-vsc").idle_reinsert_seconds == 5
    assert load_profile("multi-pin").idle_reinsert_seconds == 5
    assert load_profile("piv").idle_reinsert_seconds == 0
