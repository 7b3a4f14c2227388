"""APDU round trips through pyscard -> pcscd -> vpcd -> card, and the in-process SELECT rate.

    .venv/bin/python bench/bench_vpcd.py [--apdus 600] [--slow-apdus 60] [--rounds 3] [--seconds 1.0]

Three cards take turns in vpcd slot 0 ("Virtual PCD 00 00"), each run by a
VpcdLink in a thread of this process, so the path (pyscard, pcscd, libifdvpcd,
TCP, the link) is identical and only the card differs:

- (a) our card: the shipped `iso` profile, ephemeral (card OS, iso applet, security core);
- (b) a trivial responder: a stub whose transmit returns 90 00;
- (c) our card again with TCP_QUICKACK not re-armed (what delayed ACKs cost).

(a) and (b) alternate in `--rounds` rounds (the slot holds one card at a time).
Then the same comparison as users run it, each card in a process of its own:
(d) `vcard run --profile iso --ephemeral` against (e) the responder started with
`--serve-responder` (this script), also alternating. In-thread runs share the GIL
with the pyscard client; separate processes do not, but cold caches on every wake-up
weigh more on the card's larger code path, so both figures are printed.

Each round trip is a SELECT of the iso applet or a VERIFY status query
(`00 20 00 81`), alternating. The ratio ours/responder is the card's share of the
time (target <= 1.3); no-quickack/quickack shows what re-arming TCP_QUICKACK buys.
Last, the SELECT rate straight through `Card.transmit` (target >= 50,000/s).
Numbers are printed, never judged: the exit status is 0 whenever the run completes.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vcard import atr
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
VERIFY_STATUS = bytes.fromhex("00200081")
WORKLOAD = (SELECT_ISO, VERIFY_STATUS)
PRESENCE_TIMEOUT = 15.0
WARM_UP = 20


class Responder:
    """The least a card can do: a fixed ATR and 90 00 to everything."""

    atr = atr.build(b"vcard")

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def transmit(self, raw: bytes) -> bytes:
        return b"\x90\x00"


@dataclass
class Timing:
    label: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.samples, n=10)[-1]


class BenchError(Exception):
    pass


def wait_presence(reader: str, present: bool) -> None:
    if not wait_for_presence(reader, present, PRESENCE_TIMEOUT):
        state = "appear in" if present else "leave"
        raise BenchError(f"the card did not {state} {reader!r} within {PRESENCE_TIMEOUT:.0f} s")


def round_trips(reader: str, count: int) -> list[float]:
    """Seconds per SCardTransmit for `count` APDUs of the workload (after a warm-up).

    Timed around the connection's transmit (one SCardTransmit and the call meter's
    bookkeeping, the same for the card and the responder).
    """
    try:
        connection = PcscConnection(reader, disposition=Disposition.RESET_CARD)
    except PcscError as error:
        raise BenchError(str(error)) from None
    with connection:
        samples: list[float] = []
        for index in range(WARM_UP + count):
            apdu = WORKLOAD[index % len(WORKLOAD)]
            started = time.perf_counter()
            response = connection.transmit(apdu)
            elapsed = time.perf_counter() - started
            if len(response) < 2:
                raise BenchError(f"SCardTransmit: {len(response)} bytes, no status word")
            if index >= WARM_UP:
                samples.append(elapsed)
        return samples


def measure(label: str, card: SmartCard, quickack: bool, count: int) -> Timing:
    link = VpcdLink(card, "127.0.0.1", VPCD_BASE_PORT + SLOT, quickack=quickack, name=label)
    link.start()
    try:
        wait_presence(READER, True)
        return Timing(label, round_trips(READER, count))
    finally:
        link.stop()
        wait_presence(READER, False)


def measure_process(label: str, command: list[str], count: int) -> Timing:
    """Round trips to a card served by another process (started here, stopped after)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        wait_presence(READER, True)
        return Timing(label, round_trips(READER, count))
    finally:
        process.terminate()
        process.wait(10)
        wait_presence(READER, False)


def serve_responder() -> int:
    """Run the trivial responder on slot 0 until SIGTERM (the (e) process)."""
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    link = VpcdLink(Responder(), "127.0.0.1", VPCD_BASE_PORT + SLOT, name="responder")
    link.start()
    stop.wait()
    link.stop()
    return 0


def removal_latency(card: Card, samples: int) -> list[float]:
    """Seconds from stopping the card's link until pcscd reports the reader empty."""
    latencies = []
    for _ in range(samples):
        link = VpcdLink(card, "127.0.0.1", VPCD_BASE_PORT + SLOT, name="removal")
        link.start()
        wait_presence(READER, True)
        started = time.monotonic()
        link.stop()
        wait_presence(READER, False)
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


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f}"


def run(apdus: int, slow_apdus: int, seconds: float, rounds: int) -> None:
    profile = load_profile("iso")
    ensure_pcscd()
    if card_present(READER):
        raise BenchError(f"{READER!r} already has a card; stop it first (the benchmark needs the slot)")

    iso = VirtualCard.open(profile, None, ephemeral=True)
    ours = Timing("(a) vcard iso card, quickack", [])
    responder = Timing("(b) trivial responder, quickack", [])
    try:
        # (a) and (b) alternate in rounds so that load from other processes drifting during the
        # run weighs on both alike; the ratio is what this benchmark is for
        per_round = max(apdus // rounds, 2)
        for _ in range(rounds):
            ours.samples += measure(ours.label, iso.card, True, per_round).samples
            responder.samples += measure(responder.label, Responder(), True, per_round).samples
        slow = measure("(c) vcard iso card, no quickack", iso.card, False, slow_apdus)
        removals = removal_latency(iso.card, 5)
    finally:
        iso.close()
    ours_process = Timing("(d) vcard run process (iso)", [])
    responder_process = Timing("(e) responder process", [])
    vcard_run = [sys.executable, "-m", "vcard", "run", "--profile", "iso", "--ephemeral"]
    serve = [sys.executable, str(Path(__file__).resolve()), "--serve-responder"]
    for _ in range(rounds):
        ours_process.samples += measure_process(ours_process.label, vcard_run, per_round).samples
        responder_process.samples += measure_process(responder_process.label, serve, per_round).samples
    timings = [ours, responder, slow, ours_process, responder_process]

    local = VirtualCard.open(profile, None, ephemeral=True)
    try:
        rate = select_rate(local.card, seconds)
    finally:
        local.close()

    width = max(len(t.label) for t in timings)
    print(f"APDU round trips: pyscard -> pcscd -> vpcd -> card, reader {READER!r}")
    print(
        f"workload: SELECT iso applet / VERIFY status, alternating; (a) and (b) in {rounds} alternating"
        f" rounds; {WARM_UP} warm-up APDUs per connection not counted"
    )
    print()
    print(f"{'configuration':<{width}}  {'APDUs':>6}  {'median ms':>9}  {'mean ms':>8}  {'p90 ms':>8}")
    for timing in timings:
        print(
            f"{timing.label:<{width}}  {len(timing.samples):>6}  {ms(timing.median):>9}"
            f"  {ms(timing.mean)}  {ms(timing.p90)}"
        )
    print()
    print(f"ours / responder (median):       {ours.median / responder.median:6.2f}   (target <= 1.3)")
    print(
        f"  same, separate processes:      {ours_process.median / responder_process.median:6.2f}"
        "   (target <= 1.3)"
    )
    print(f"no-quickack / quickack (median): {slow.median / ours.median:6.2f}")
    print(f"in-process SELECT via Card.transmit: {rate:,.0f}/s   (target >= 50,000/s)")
    print(
        f"card stopped -> reader empty: max {max(removals):.2f} s over {len(removals)} removals"
        "   (target <= 1 s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--apdus", type=int, default=600, help="APDUs measured per quickack configuration")
    parser.add_argument("--slow-apdus", type=int, default=60, help="APDUs measured without quickack")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of (a) and (b)")
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of the in-process SELECT loop")
    parser.add_argument("--serve-responder", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_responder:
        return serve_responder()
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
