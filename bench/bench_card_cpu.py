"""CPU time the card process spends per SELECT and VERIFY status, above the floor of a bare vpcd responder.

    .venv/bin/python bench/bench_card_cpu.py [--apdus 4000] [--rounds 3]

Four processes take turns in vpcd slot 0, each driven with the same SELECTs of the
iso applet, then the same VERIFY status queries (`00 20 00 81`, answered 63C3), through
pyscard -> pcscd -> vpcd:

- the floor: bench/responder.py, a bare socket loop sending the card's answers;
- the link alone: `bench/responder.py --link`, the same answers from a stub card behind
  vcard's VpcdLink (its difference to the floor is what the transport costs);
- `vcard run --profile iso --ephemeral` (the card OS, the link, the security core);
- the same with `--trace` (every APDU decoded and logged; stderr goes to /dev/null,
  so the formatting and the write are counted, not a terminal).

The CPU time of the serving process is read from the kernel before and after the
APDUs of each workload (/proc/PID/task/*/schedstat, the scheduler's nanosecond run time summed over
the process's threads; /proc/PID/stat in clock ticks where schedstat is missing), so
the figure covers everything the process does for an APDU: system calls, the link,
the card, the trace. All of it runs with the client, pcscd and the serving process on one
CPU where that can be arranged (bench/placement.py: a process woken on another CPU of a
small virtual machine spends varying time resuming it, which the floor's figure would
carry as noise). The four alternate in `--rounds` rounds so that load drifting
during the run weighs on all alike; per configuration the median over rounds is printed
with the lowest and highest round. The extra CPU of the card is its median minus the
floor's median (target: <= 8 us per SELECT); what `--trace` adds is the traced
card's median minus the untraced one (target: <= 15 us). Numbers are printed, never
judged.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from placement import PlacementError, one_cpu

from vcard.host import Disposition, PcscConnection, PcscError
from vcard.testing import card_present, exclusive_slots, wait_for_presence
from vcard.transport.vpcd import reader_name

REPO_ROOT = Path(__file__).resolve().parents[1]
READER = reader_name(0)
SELECT_ISO = bytes.fromhex("00A4040007F07663617264") + b"\x01"
# name: (command, the status word every answer must end with); the responder answers alike
WORKLOADS = {
    "SELECT": (SELECT_ISO, b"\x90\x00"),
    "VERIFY status": (bytes.fromhex("00200081"), b"\x63\xc3"),
}
PRESENCE_TIMEOUT = 15.0
WARM_UP = 200
CLOCK_TICK = 1 / os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


@dataclass
class Series:
    label: str
    command: list[str]
    # per workload, seconds of CPU per APDU, one figure per round
    per_apdu: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in WORKLOADS})

    def median(self, workload: str = "SELECT") -> float:
        return statistics.median(self.per_apdu[workload])


def process_cpu(pid: int) -> float:
    """Seconds of CPU the process `pid` has used so far, all threads (the living ones)."""
    total_ns = 0
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/schedstat") as stats:
                total_ns += int(stats.read().split()[0])
        return total_ns / 1e9
    except FileNotFoundError:
        pass
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK  # utime + stime


def wait_presence(present: bool) -> None:
    if not wait_for_presence(READER, present, PRESENCE_TIMEOUT):
        raise BenchError(f"the card did not {'appear in' if present else 'leave'} {READER!r}")


def cpu_per_apdu(command: list[str], apdus: int) -> dict[str, float]:
    """Start `command`; per workload, after a warm-up, its CPU seconds per APDU over `apdus` APDUs."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        wait_presence(True)
        try:
            connection = PcscConnection(READER, disposition=Disposition.RESET_CARD)
        except PcscError as error:
            raise BenchError(str(error)) from None
        figures: dict[str, float] = {}
        with connection:
            connection.transmit(SELECT_ISO)
            for name, (apdu, status) in WORKLOADS.items():
                for _ in range(WARM_UP):
                    connection.transmit(apdu)
                before = process_cpu(process.pid)
                for _ in range(apdus):
                    response = connection.transmit(apdu)
                after = process_cpu(process.pid)
                if response[-2:] != status:
                    raise BenchError(f"{command[-1]}: {name} answered {response.hex().upper()}")
                figures[name] = (after - before) / apdus
        return figures
    finally:
        process.terminate()
        process.wait(10)
        wait_presence(False)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:7.1f}"


def run(apdus: int, rounds: int) -> None:
    if card_present(READER):
        raise BenchError(f"{READER!r} already has a card; stop it first (the benchmark needs the slot)")
    vcard_run = [sys.executable, "-m", "vcard", "run", "--profile", "iso", "--ephemeral"]
    responder = [sys.executable, str(REPO_ROOT / "bench" / "responder.py")]
    series = [
        Series("floor: bare responder process", responder),
        Series("VpcdLink + stub", [*responder, "--link"]),
        Series("vcard run (iso)", vcard_run),
        Series("vcard run (iso) --trace", [*vcard_run, "--trace"]),
    ]

    def measure() -> None:
        for _ in range(rounds):
            for entry in series:
                for name, figure in cpu_per_apdu(entry.command, apdus).items():
                    entry.per_apdu[name].append(figure)

    try:
        with one_cpu() as cpu:
            measure()
        placement = f"client, pcscd and the serving process on CPU {cpu}"
    except PlacementError as error:
        measure()
        placement = f"placed by the scheduler ({error})"
    floor, link, card, traced = series
    width = max(len(entry.label) for entry in series)
    print(f"CPU of the serving process per APDU through pcscd + vpcd ({apdus} APDUs x {rounds} rounds)")
    print(f"placement: {placement}")
    for name in WORKLOADS:
        print()
        print(f"{name:<{width}}  {'median us':>9}  {'min us':>7}  {'max us':>7}")
        for entry in series:
            low, high = min(entry.per_apdu[name]), max(entry.per_apdu[name])
            print(f"{entry.label:<{width}}  {us(entry.median(name)):>9}  {us(low)}  {us(high)}")
    print()
    for name in WORKLOADS:
        print(f"{name}:")
        print(f"  link - floor:           {us(link.median(name) - floor.median(name))} us")
        target = "   (target <= 8 us)" if name == "SELECT" else ""
        print(f"  card - floor:           {us(card.median(name) - floor.median(name))} us{target}")
        print(f"  card --trace - floor:   {us(traced.median(name) - floor.median(name))} us")
        target = "   (target <= 15 us)" if name == "SELECT" else ""
        print(f"  what --trace adds:      {us(traced.median(name) - card.median(name))} us{target}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--apdus", type=int, default=4000, help="APDUs measured per workload, process and round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the four processes")
    args = parser.parse_args(argv)
    if args.apdus < 1 or args.rounds < 1:
        parser.error("--apdus and --rounds must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    try:
        with exclusive_slots():
            run(args.apdus, args.rounds)
    except BenchError as error:
        print(f"bench_card_cpu: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
