"""Durable state writes: VERIFY on a persistent (`--state`) card against the floor of its own writes.

Measured in one run on one machine, in alternating rounds, so only the ratios mean something:

- ephemeral: a right-PIN VERIFY (in process, `Card.transmit`) on a card kept in memory;
- persistent: the same on a card whose state is on disk, provisioned with keys and
  certificates in 9A, 9C, 9D and 9E (so that writing the whole state would show);
- bare writes: a plain loop doing, per VERIFY, the write + fsync steps the persistent
  card did (counted by its store: how many writes, how many bytes), to a file in the
  same directory, with nothing else around them;
- floor: the ephemeral VERIFY with those bare writes around it (the first before, the
  others after, as the card consumes the try before comparing and restores it after):
  the same CPU work and the same raw writes, in the same rhythm, without the store;
- whole-document rewrites (for comparison): per VERIFY, as many atomic rewrites of a
  file of state.json's size (temp file, fsync, rename, fsync of the directory) as
  the card made writes; what a store that saves the whole document for every
  counter change pays.

Ratios (median over --rounds rounds, with the spread; each round measures every side):

- floor: persistent VERIFY/s / floor VERIFY/s. 1.0 means the persistent card costs
  nothing beyond its VERIFY work and its raw writes (goal >= 0.8);
- store: time in the floor side's bare writes / time the persistent card spent in its
  store's saves, per VERIFY (timed around each write and around `StateStore.save`): how
  close the store's own path (finding what changed, encoding, checksum, write, fsync) is
  to the raw writes. Also printed against the bare writes back to back, which is lower:
  an fsync right after another costs less than one after a millisecond of PBKDF2;
- persistent / ephemeral VERIFY/s (report).

The machine load (1-minute load average) is printed before and after: on a busy machine
the fsync times swing between rounds, so re-measure quiet before quoting figures.

Usage: python bench/bench_state.py [--seconds 1.0] [--rounds 5] [--dir DIR] [--strict]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from timing import rate  # noqa: E402  (bench/ is on sys.path when run as a script)

from vcard.host import InProcessConnection  # noqa: E402
from vcard.profile import load_profile  # noqa: E402
from vcard.runtime import VirtualCard  # noqa: E402
from vcard.store import STATE_FILE  # noqa: E402
from vcard.testing.provisioning import PivProvisioner  # noqa: E402

SELECT = bytes.fromhex("00A4040005A000000308")
VERIFY = bytes.fromhex("0020008008") + b"123456\xff\xff"
SLOTS = {0x9A: "rsa2048", 0x9C: "rsa2048", 0x9D: "p256", 0x9E: "p256"}
FLOOR_GOAL = 0.8


def open_card(directory: Path | None) -> VirtualCard:
    """A PIV card with keys and certificates in four slots, selected, PIN not yet verified."""
    virtual = VirtualCard.open(load_profile("piv"), directory, ephemeral=directory is None)
    virtual.card.power_on()
    PivProvisioner(InProcessConnection(virtual.card, power_on=False)).provision(SLOTS)
    assert virtual.card.transmit(SELECT)[-2:] == b"\x90\x00"
    return virtual


def verifier(virtual: VirtualCard) -> Callable[[], None]:
    transmit = virtual.card.transmit

    def verify() -> None:
        answer = transmit(VERIFY)
        if answer[-2:] != b"\x90\x00":
            raise RuntimeError(f"VERIFY answered {answer.hex().upper()}")

    return verify


def writes_per_verify(virtual: VirtualCard, count: int = 50) -> tuple[float, float, int]:
    """(writes, bytes written, whole-document writes) per right-PIN VERIFY, as the store counted them."""
    store = virtual.state.store
    verify = verifier(virtual)
    verify()
    writes, size, counters = store.writes, store.written_bytes, store.counter_writes
    for _ in range(count):
        verify()
    whole = (store.writes - writes) - (store.counter_writes - counters)
    return (store.writes - writes) / count, (store.written_bytes - size) / count, whole


def bare_write(directory: Path, size: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """One pwrite + fsync of `size` bytes into a file in `directory` (two contents in turn): (step, close)."""
    fd = os.open(directory / "bench-bare", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    contents = [secrets.token_bytes(size), secrets.token_bytes(size)]
    os.pwrite(fd, contents[0], 0)
    os.fsync(fd)
    turn = 0

    def step() -> None:
        nonlocal turn
        turn ^= 1
        os.pwrite(fd, contents[turn], 0)
        os.fsync(fd)

    return step, lambda: os.close(fd)


def whole_rewrites(directory: Path, steps: int, size: int) -> Callable[[], None]:
    """`steps` atomic rewrites of a `size`-byte file: temp, write, fsync, rename, fsync of the directory."""
    data = secrets.token_bytes(size)
    target = directory / "bench-whole"

    def operation() -> None:
        for _ in range(steps):
            temp = directory / f".bench-whole.{secrets.token_hex(8)}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, target)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    return operation


class TimedSaves:
    """Wraps a store's `save` and adds up the time spent in it."""

    def __init__(self, store: Any) -> None:
        self.seconds = 0.0
        self.saves = 0
        self._save = store.save
        store.save = self

    def __call__(self, document: Any) -> None:
        started = time.perf_counter()
        try:
            self._save(document)
        finally:
            self.seconds += time.perf_counter() - started
            self.saves += 1


def spread(values: list[float], digits: int = 2) -> str:
    return (
        f"{statistics.median(values):.{digits}f} (spread {min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per side per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (>= 3; the median is reported)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the state directory goes (default: a temp dir)"
    )
    parser.add_argument(
        "--strict", action="store_true", help=f"exit 1 if the floor ratio is below {FLOOR_GOAL}"
    )
    args = parser.parse_args()
    rounds = max(3, args.rounds)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vcard-bench-state-", dir=args.dir) as work:
        directory = Path(work) / "card"
        persistent = open_card(directory)
        ephemeral = open_card(None)
        try:
            state_size = (directory / STATE_FILE).stat().st_size
            steps_f, bytes_f, whole = writes_per_verify(persistent)
            steps = round(steps_f)
            size = round(bytes_f / steps_f) if steps_f else 0
            step, close_bare = bare_write(directory, size)

            def bare() -> None:
                for _ in range(steps):
                    step()

            rhythm = [0.0]  # seconds spent in the bare writes of the floor side

            def timed_step() -> None:
                started = time.perf_counter()
                step()
                rhythm[0] += time.perf_counter() - started

            def floor_verify() -> None:
                if steps:
                    timed_step()
                verify_ephemeral()
                for _ in range(steps - 1):
                    timed_step()

            rewrite = whole_rewrites(directory, steps, state_size)
            verify_persistent, verify_ephemeral = verifier(persistent), verifier(ephemeral)

            results: dict[str, list[float]] = {
                name: [] for name in ("ephemeral", "persistent", "floor", "bare", "whole")
            }
            timed = TimedSaves(persistent.state.store)
            save_seconds: list[float] = []
            rhythm_seconds: list[float] = []
            sides = {
                "ephemeral": verify_ephemeral,
                "persistent": verify_persistent,
                "floor": floor_verify,
                "bare": bare,
                "whole": rewrite,
            }
            try:
                for _ in range(rounds):
                    for name, operation in sides.items():
                        before, rhythm_before = timed.seconds, rhythm[0]
                        verifies = 0

                        def counted(operation: Callable[[], None] = operation) -> None:
                            nonlocal verifies
                            operation()
                            verifies += 1

                        results[name].append(rate(counted, args.seconds))
                        if name == "persistent":
                            save_seconds.append((timed.seconds - before) / verifies)
                        if name == "floor":
                            rhythm_seconds.append((rhythm[0] - rhythm_before) / verifies)
            finally:
                close_bare()
        finally:
            persistent.close()
            ephemeral.close()
    load_after = os.getloadavg()[0]
    floor = [pers / low for pers, low in zip(results["persistent"], results["floor"], strict=True)]
    store = [raw / spent for raw, spent in zip(rhythm_seconds, save_seconds, strict=True)]
    back_to_back = [
        (1 / bare_rate) / spent for bare_rate, spent in zip(results["bare"], save_seconds, strict=True)
    ]
    versus_ephemeral = [
        pers / eph for eph, pers in zip(results["ephemeral"], results["persistent"], strict=True)
    ]
    # What a store that rewrites state.json for every counter change would reach (estimate).
    whole_estimate = [
        1 / (1 / eph + 1 / whole_rate)
        for eph, whole_rate in zip(results["ephemeral"], results["whole"], strict=True)
    ]
    print(f"state: state.json {state_size} bytes (keys and certificates in 9A, 9C, 9D, 9E)")
    print(
        f"per right-PIN VERIFY the store made {steps_f:.2f} writes of {size} bytes each"
        f" ({whole} whole-document writes in {50} VERIFYs)"
    )
    print(f"machine load (1 min) {load_before:.2f} before, {load_after:.2f} after;", end=" ")
    print(f"{rounds} rounds of {args.seconds} s per side")
    print(f"  ephemeral VERIFY/s             {spread(results['ephemeral'], 0)}")
    print(f"  persistent VERIFY/s            {spread(results['persistent'], 0)}")
    print(f"  floor (ephemeral VERIFY + bare writes)/s  {spread(results['floor'], 0)}")
    print(f"  bare {steps} x (pwrite {size} B + fsync)/s  {spread(results['bare'], 0)}")
    print(f"  {steps} x whole-document rewrite ({state_size} B)/s  {spread(results['whole'], 0)}")
    print(
        f"floor ratio persistent / (ephemeral VERIFY + bare writes): {spread(floor)}x (goal >= {FLOOR_GOAL})"
    )
    print(f"store ratio bare writes (in the floor's rhythm) / time in the store's saves: {spread(store)}x")
    print(
        f"  time in the store's saves per persistent VERIFY: {spread([1e6 * t for t in save_seconds], 0)} us"
    )
    print(f"  time in the bare writes per floor VERIFY: {spread([1e6 * t for t in rhythm_seconds], 0)} us")
    print(f"  the same bare writes back to back / time in the store's saves: {spread(back_to_back)}x")
    print(f"persistent / ephemeral VERIFY/s: {spread(versus_ephemeral)}x")
    print(
        f"for comparison: VERIFY/s if every counter change rewrote state.json (ephemeral + rewrites):"
        f" {spread(whole_estimate, 0)}"
    )
    if args.strict and statistics.median(floor) < FLOOR_GOAL:
        print(f"FAIL: floor ratio below {FLOOR_GOAL}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
