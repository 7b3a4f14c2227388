"""Rate measurement shared by the benchmarks (run as `python bench/bench_*.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second over at least `seconds`, after one warm-up call.

    Calls are timed in batches of ten so the clock is read rarely compared with
    fast operations (an in-process SELECT takes a few microseconds).
    """
    operation()
    count = 0
    started = time.perf_counter()
    while True:
        for _ in range(10):
            operation()
        count += 10
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed
