"""Rate measurement shared by the benchmarks (run as `python bench/bench_*.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
WALL: Clock = time.perf_counter
CPU: Clock = time.thread_time
"""CPU time of the calling thread: on a machine busy with other work, the time this
thread waits for a core is not counted (in-process benchmarks are single-threaded and
do no I/O, so CPU time is their whole cost)."""


def rate(operation: Callable[[], object], seconds: float, clock: Clock = WALL) -> float:
    """Operations per second of `clock` over at least `seconds` of it, after one warm-up call.

    Calls are timed in batches of ten so the clock is read rarely compared with
    fast operations (an in-process SELECT takes a few microseconds).
    """
    operation()
    count = 0
    started = clock()
    while True:
        for _ in range(10):
            operation()
        count += 10
        elapsed = clock() - started
        if elapsed >= seconds:
            return count / elapsed


@dataclass(frozen=True)
class Comparison:
    """Rates of a measured path and of its baseline, one pair per round (same load in each pair)."""

    rates: tuple[float, ...]
    baseline_rates: tuple[float, ...]

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(ours / base for ours, base in zip(self.rates, self.baseline_rates, strict=True))

    @property
    def ratio(self) -> float:
        """Median over the rounds of the per-round ratio."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest per-round ratio."""
        return min(self.ratios), max(self.ratios)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def baseline_rate(self) -> float:
        return statistics.median(self.baseline_rates)

    def ratio_text(self) -> str:
        low, high = self.spread
        return f"{self.ratio:.3f} ({low:.3f}-{high:.3f})"


def compare(
    operation: Callable[[], object],
    baseline: Callable[[], object],
    rounds: int,
    seconds: float,
    clock: Clock = WALL,
) -> Comparison:
    """`rounds` rounds of `seconds` each side, the two sides back to back in every round.

    The side that goes first alternates from round to round, so neither always runs
    right after the other has warmed (or heated) the CPU; a round's ratio compares two
    measurements taken under the same machine load.
    """
    if rounds < 1:
        raise ValueError("at least one round")
    ours: list[float] = []
    base: list[float] = []
    for index in range(rounds):
        if index % 2:
            base.append(rate(baseline, seconds, clock))
            ours.append(rate(operation, seconds, clock))
        else:
            ours.append(rate(operation, seconds, clock))
            base.append(rate(baseline, seconds, clock))
    return Comparison(tuple(ours), tuple(base))
