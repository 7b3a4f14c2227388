"""The machine-wide lock that serialises users of the vpcd slots (test runs, benchmarks).

Test infrastructure, not transport: `vcard run` never takes it. Only one card can
sit in a vpcd slot, so two test runs on one machine must queue instead of seeing
each other's cards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
from collections.abc import Iterator

LOCK_PATH = "/tmp/vcard-vpcd.lock"
"""Tests and benchmarks on one machine share the vpcd slots; they queue on this lock."""


_held_locks: dict[str, tuple[int, int, bool]] = {}  # real path -> (descriptor, depth, opened here)
_held_locks_guard = threading.Lock()


def _open_lock_file(path: str) -> int:
    # Open an existing file without O_CREAT: with fs.protected_regular, O_CREAT on another
    # user's file in sticky /tmp fails. Read-only is enough for flock.
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _inherited_holder(fd: int) -> int | None:
    """A descriptor inherited from a parent that already holds the lock, or None.

    `flock /tmp/vcard-vpcd.lock pytest ...` is a natural way to queue a run by hand:
    pytest then inherits the locked descriptor, and taking the lock again on a fresh
    descriptor would wait for ourselves forever. flock on the very descriptor that
    holds the lock succeeds at once, which is how the holder is recognised.
    """
    target = os.fstat(fd)
    try:
        candidates = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return None
    for candidate in candidates:
        if candidate == fd:
            continue
        try:
            info = os.fstat(candidate)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) != (target.st_dev, target.st_ino):
            continue
        try:
            fcntl.flock(candidate, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue
        return candidate
    return None


def _acquire(key: str, shown_path: str) -> tuple[int, bool]:
    """Lock `key`; returns (descriptor, whether we opened it and must close it)."""
    fd = _open_lock_file(key)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, True
        except BlockingIOError:
            pass
        inherited = _inherited_holder(fd)
        if inherited is not None:
            os.close(fd)
            return inherited, False
        # a plain message on stderr: whoever waits (a test run, a benchmark) should see why
        print(
            f"waiting for {shown_path}: another test run or benchmark holds the vpcd slots", file=sys.stderr
        )
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, True
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def exclusive_slots(path: str = LOCK_PATH) -> Iterator[None]:
    """Hold an exclusive flock that serialises users of the vpcd slots on this machine.

    Only one card can sit in a vpcd slot: a second card's TCP connection is queued by
    the kernel but never accepted, so two concurrent test runs would see each other's
    cards. Tests and benchmarks take this lock for their whole run and thereby queue.

    Re-entrant within a process: a session-wide holder (the integration harness) and a
    per-test holder (the pytest plugin's fixtures) must not deadlock each other, which
    two flocks on separate descriptors of the same file in one process would. A lock
    already held through a descriptor inherited from the parent (`flock LOCK pytest`)
    counts as held.
    """
    key = os.path.realpath(path)
    with _held_locks_guard:
        held = _held_locks.get(key)
        if held is not None:
            _held_locks[key] = (held[0], held[1] + 1, held[2])
        else:
            fd, owned = _acquire(key, path)
            _held_locks[key] = (fd, 1, owned)
    try:
        yield
    finally:
        with _held_locks_guard:
            fd, depth, owned = _held_locks[key]
            if depth > 1:
                _held_locks[key] = (fd, depth - 1, owned)
            else:
                del _held_locks[key]
                if owned:
                    os.close(fd)  # closing the descriptor releases the lock
                # an inherited descriptor stays open: its lock belongs to the parent
