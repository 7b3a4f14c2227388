"""Where the processes of a round trip run: freely, or all on one CPU.

A round trip through pcscd involves three processes that wake each other in turn:
the client, pcscd and the card. On a small virtual machine a wake-up on another
CPU is slow (an inter-processor interrupt, and a halted virtual CPU the hypervisor
has to resume), and how often that happens depends on timing: a side that answers a
few microseconds later can find the other CPU asleep and pay tens of microseconds
more. With free placement a ratio against the floor therefore mixes the card's own
cost with that cliff, and varies from run to run with where the scheduler put things.

`one_cpu()` pins the calling process, its future children and every thread of the
running pcscd to one CPU for the duration of a measurement, and gives pcscd its
own affinity back afterwards (threads it started meanwhile included). The round
trip is then the three processes' work in sequence plus their context switches:
the same for the card and the floor, and steadier across runs. Pinning pcscd
needs the right to change its affinity (root, or the same user); without it the
measurement is reported as unavailable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PlacementError(Exception):
    """The processes cannot be pinned here (no sched_setaffinity, no pcscd, or not permitted)."""


def _pcscd_tasks() -> list[int]:
    """Thread ids of every running pcscd (its threads have their own affinity)."""
    tasks: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "pcscd":
                continue
            tasks.extend(int(task.name) for task in (entry / "task").iterdir())
        except OSError:  # the process ended meanwhile
            continue
    return tasks


@contextmanager
def one_cpu() -> Iterator[int]:
    """Run the body with this process, its children and pcscd on one CPU; yields that CPU."""
    if not hasattr(os, "sched_setaffinity"):
        raise PlacementError("this system cannot pin processes to a CPU")
    own = os.sched_getaffinity(0)
    cpu = min(own)
    tasks = _pcscd_tasks()
    if not tasks:
        raise PlacementError("no pcscd is running")
    saved: dict[int, set[int]] = {}
    try:
        for task in tasks:
            try:
                saved[task] = os.sched_getaffinity(task)
                os.sched_setaffinity(task, {cpu})
            except ProcessLookupError:  # a thread that ended meanwhile
                continue
            except PermissionError:
                raise PlacementError(f"not permitted to pin pcscd (thread {task}) to CPU {cpu}") from None
        os.sched_setaffinity(0, {cpu})
        yield cpu
    finally:
        os.sched_setaffinity(0, own)
        # Threads pcscd started meanwhile (one per client context) inherited the pin: they get
        # the affinity pcscd's threads had before, as do the ones that were pinned.
        before = set.union(*saved.values()) if saved else own
        for task in _pcscd_tasks():
            try:
                os.sched_setaffinity(task, saved.get(task, before))
            except OSError:
                continue
