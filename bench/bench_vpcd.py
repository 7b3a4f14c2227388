"""APDU round trips through pyscard -> pcscd -> vpcd -> card against a trivial responder on the same path.

    .venv/bin/python bench/bench_vpcd.py [--apdus 3500] [--rounds 7] [--slow-apdus 60] [--seconds 1.0]

Three workloads, interleaved on one connection so that drifting load weighs on all
alike: SELECT of the iso applet, VERIFY status (`00 20 00 81`, Lc absent: the card
answers 63C3, the role is not authenticated) and GET DATA of a 1 KB object (extended
Le; the object is written by PUT DATA before the measured APDUs).

- As users run it, each side in a process of its own: `vcard run --profile iso
  --ephemeral` against bench/responder.py, a bare socket loop that answers 90 00 (and
  1 KB of zeros to the GET DATA) with the same socket options. The two take turns in vpcd
  slot 0 in `--rounds` rounds; per round and workload the ratio of the medians
  ours/responder; printed are the median ratio over the rounds and its lowest and
  highest round (targets: <= 1.15 on a quiet machine, <= 1.25 loaded). This runs twice:
  with the client, pcscd and the serving process on one CPU (bench/placement.py: the
  card's own cost, stable from run to run; the targets apply here), and placed by the
  scheduler, where on a small virtual machine cross-CPU wake-ups amplify any difference.
- In-thread: our card and the same responder behind vcard's VpcdLink, both served
  from a thread of this process (they share the GIL with the pyscard client).
- Our card with TCP_QUICKACK not re-armed (SELECTs only): what delayed ACKs cost.
- The SELECT rate straight through `Card.transmit`, and how long pcscd takes to see a
  stopped card's reader empty.

See bench/bench_card_cpu.py for the CPU the card process spends per SELECT. Numbers are
printed, never judged: the exit status is 0 whenever the run completes.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from placement import PlacementError, one_cpu
from responder import StubCard

from vcard.cardos import Card
from vcard.host import Disposition, PcscConnection, PcscError
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing import card_present, exclusive_slots, wait_for_presence
from vcard.transport.vpcd import VPCD_BASE_PORT, SmartCard, VpcdLink, reader_name

REPO_ROOT = Path(__file__).resolve().parents[1]
SLOT = 0
READER = reader_name(SLOT)
ISO_AID = bytes.fromhex("F07663617264") + b"\x01"
SELECT_ISO = bytes.fromhex("00A40400") + bytes([len(ISO_AID)]) + ISO_AID
OBJECT = bytes(range(256)) * 4  # 1 KB
SETUP = (
    SELECT_ISO,
    bytes.fromhex("0020008106") + b"123456",  # the iso profile's user PIN (role 1 may write)
    bytes.fromhex("00DA0100000400") + OBJECT,  # PUT DATA 0100, extended Lc
    bytes.fromhex("0020FF81"),  # log out again: VERIFY status answers 63C3
)
WORKLOADS = {
    "SELECT": SELECT_ISO,
    "VERIFY status": bytes.fromhex("00200081"),
    "GET DATA 1 KB": bytes.fromhex("00CA0100000400"),  # extended Le 1024
}
PRESENCE_TIMEOUT = 15.0
WARM_UP = 20


class BenchError(Exception):
    pass


@dataclass
class Side:
    """One side of a comparison: per workload, the round-trip samples of each round."""

    label: str
    rounds: dict[str, list[list[float]]] = field(default_factory=lambda: {name: [] for name in WORKLOADS})

    def median(self, workload: str) -> float:
        return statistics.median(sample for samples in self.rounds[workload] for sample in samples)

    def add_round(self, samples: dict[str, list[float]]) -> None:
        for name, values in samples.items():
            self.rounds[name].append(values)


def wait_presence(present: bool) -> None:
    if not wait_for_presence(READER, present, PRESENCE_TIMEOUT):
        state = "appear in" if present else "leave"
        raise BenchError(f"the card did not {state} {READER!r} within {PRESENCE_TIMEOUT:.0f} s")


def round_trips(count: int, workloads: dict[str, bytes]) -> dict[str, list[float]]:
    """Seconds per SCardTransmit, `count` per workload, interleaved (after set-up and warm-up).

    Timed around the connection's transmit (one SCardTransmit and the call meter's
    bookkeeping, the same for the card and the responder).
    """
    try:
        connection = PcscConnection(READER, disposition=Disposition.RESET_CARD)
    except PcscError as error:
        raise BenchError(str(error)) from None
    samples: dict[str, list[float]] = {name: [] for name in workloads}
    with connection:
        for apdu in SETUP:
            response = connection.transmit(apdu)
            if response[-2:] != b"\x90\x00":
                raise BenchError(f"set-up APDU {apdu[:4].hex().upper()} answered {response.hex().upper()}")
        order = list(workloads.items())
        for index in range(len(order) * (WARM_UP + count)):
            name, apdu = order[index % len(order)]
            started = time.perf_counter()
            response = connection.transmit(apdu)
            elapsed = time.perf_counter() - started
            if len(response) < 2:
                raise BenchError(f"SCardTransmit: {len(response)} bytes, no status word")
            if index >= len(order) * WARM_UP:
                samples[name].append(elapsed)
    return samples


def in_thread(
    card: SmartCard, quickack: bool, count: int, workloads: dict[str, bytes]
) -> dict[str, list[float]]:
    link = VpcdLink(card, "127.0.0.1", VPCD_BASE_PORT + SLOT, quickack=quickack, name="bench")
    link.start()
    try:
        wait_presence(True)
        return round_trips(count, workloads)
    finally:
        link.stop()
        wait_presence(False)


def in_process(command: list[str], count: int) -> dict[str, list[float]]:
    """Round trips to a card served by another process (started here, stopped after)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        wait_presence(True)
        return round_trips(count, WORKLOADS)
    finally:
        process.terminate()
        process.wait(10)
        wait_presence(False)


def removal_latency(card: Card, samples: int) -> list[float]:
    """Seconds from stopping the card's link until pcscd reports the reader empty."""
    latencies = []
    for _ in range(samples):
        link = VpcdLink(card, "127.0.0.1", VPCD_BASE_PORT + SLOT, name="removal")
        link.start()
        wait_presence(True)
        started = time.monotonic()
        link.stop()
        wait_presence(False)
        latencies.append(time.monotonic() - started)
    return latencies


def select_rate(card: Card, seconds: float) -> float:
    """SELECTs per second straight through Card.transmit."""
    card.power_on()
    if card.transmit(SELECT_ISO) != b"\x90\x00":
        raise BenchError("the iso applet does not answer SELECT with 90 00")
    done = 0
    batch = 1000
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(batch):
            card.transmit(SELECT_ISO)
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


def ensure_pcscd() -> None:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure-pcscd.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError((result.stdout + result.stderr).strip())


def alternate(
    rounds: int,
    ours: Side,
    theirs: Side,
    measure_ours: Callable[[], dict[str, list[float]]],
    measure_theirs: Callable[[], dict[str, list[float]]],
) -> None:
    """Measure the two sides in turns, so that load drifting during the run weighs on both alike."""
    for _ in range(rounds):
        ours.add_round(measure_ours())
        theirs.add_round(measure_theirs())


def report(title: str, ours: Side, theirs: Side, target: str) -> None:
    print(title)
    print(f"  {'workload':<14} {'ours ms':>8} {'floor ms':>8}  {'ratio':>5}  {'rounds (lowest-highest)':<24}")
    for name in WORKLOADS:
        per_round = [
            statistics.median(a) / statistics.median(b)
            for a, b in zip(ours.rounds[name], theirs.rounds[name], strict=True)
        ]
        print(
            f"  {name:<14} {ours.median(name) * 1000:8.3f} {theirs.median(name) * 1000:8.3f}"
            f"  {statistics.median(per_round):5.2f}  {min(per_round):.2f}-{max(per_round):.2f}"
        )
    print(f"  target: {target}")


def run(apdus: int, slow_apdus: int, seconds: float, rounds: int) -> None:
    profile = load_profile("iso")
    ensure_pcscd()
    if card_present(READER):
        raise BenchError(f"{READER!r} already has a card; stop it first (the benchmark needs the slot)")
    per_round = max(apdus // rounds, 2)

    vcard_run = [sys.executable, "-m", "vcard", "run", "--profile", "iso", "--ephemeral"]
    responder = [sys.executable, str(REPO_ROOT / "bench" / "responder.py")]

    def processes() -> tuple[Side, Side]:
        ours, floor = Side("vcard run"), Side("responder process")
        alternate(
            rounds,
            ours,
            floor,
            lambda: in_process(vcard_run, per_round),
            lambda: in_process(responder, per_round),
        )
        return ours, floor

    pinned: tuple[Side, Side] | str
    try:
        with one_cpu():
            pinned = processes()
    except PlacementError as error:
        pinned = str(error)
    ours_process, floor_process = processes()

    iso = VirtualCard.open(profile, None, ephemeral=True)
    try:
        ours_thread, floor_thread = Side("card in thread"), Side("stub in thread")
        alternate(
            rounds,
            ours_thread,
            floor_thread,
            lambda: in_thread(iso.card, True, per_round, WORKLOADS),
            lambda: in_thread(StubCard(), True, per_round, WORKLOADS),
        )
        slow = in_thread(iso.card, False, slow_apdus, {"SELECT": SELECT_ISO})["SELECT"]
        removals = removal_latency(iso.card, 5)
    finally:
        iso.close()

    local = VirtualCard.open(profile, None, ephemeral=True)
    try:
        rate = select_rate(local.card, seconds)
    finally:
        local.close()

    print(f"APDU round trips: pyscard -> pcscd -> vpcd -> card, reader {READER!r}")
    print(
        f"{per_round} APDUs per workload, side and round, {rounds} rounds alternating the sides;"
        f" {WARM_UP} warm-up APDUs per workload and connection not counted"
    )
    print()
    if isinstance(pinned, str):
        print(f"separate processes on one CPU: not measured ({pinned})")
    else:
        report(
            "separate processes on one CPU (client, pcscd and card pinned): vcard run (iso) / bare responder",
            *pinned,
            "<= 1.15 quiet, <= 1.25 loaded",
        )
    print()
    report(
        "separate processes, placed by the scheduler: vcard run (iso) / bare responder process",
        ours_process,
        floor_process,
        "- (cross-CPU wake-ups weigh in; see bench/placement.py)",
    )
    print()
    report(
        "in-thread: our card / the stub behind VpcdLink, both in this process", ours_thread, floor_thread, "-"
    )
    print()
    slow_median = statistics.median(slow)
    print(
        f"no quickack: SELECT median {slow_median * 1000:.3f} ms,"
        f" {slow_median / ours_thread.median('SELECT'):.0f}x the in-thread card with quickack"
    )
    print(f"in-process SELECT via Card.transmit: {rate:,.0f}/s   (target >= 50,000/s)")
    print(
        f"card stopped -> reader empty: max {max(removals):.2f} s over {len(removals)} removals"
        "   (target <= 1 s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--apdus", type=int, default=3500, help="APDUs per workload and side (all rounds)")
    parser.add_argument("--slow-apdus", type=int, default=60, help="SELECTs measured without quickack")
    parser.add_argument("--rounds", type=int, default=7, help="alternations of our card and the responder")
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of the in-process SELECT loop")
    args = parser.parse_args(argv)
    if args.apdus < 2 or args.slow_apdus < 2 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--apdus and --slow-apdus must be >= 2, --rounds >= 1 and --seconds > 0")
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    try:
        with exclusive_slots():
            run(args.apdus, args.slow_apdus, args.seconds, args.rounds)
    except BenchError as error:
        print(f"bench_vpcd: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
