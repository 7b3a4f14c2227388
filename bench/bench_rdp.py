"""RDP smart-card redirection lab: SCard calls of real clients, the model against real delay, the chart.

1. In-process minidriver flows (no pcscd): the naive CSP and the Base CSP cold and warm,
   with their modelled sign-in time at 250 ms / 4 Mbit/s and the targets.
2. PIV and GIDS `vcard run` cards through pcscd (under the vpcd lock): each client is run
   with the SCard interposer at 0 ms (call counts), then with every call delayed by 50
   and 250 ms; the model's prediction from the 0 ms run is printed beside the measured time.
3. MIT kinit signing in through OpenSC against a private lab KDC, PIV and GIDS, traced: its
   call logs are kept in docs/rdp-traces/ (`vcard rdp chart --log NAME=LOG` draws them).
4. The chart (docs/rdp-signin.png and .svg): minidriver flows plus the traced real clients.

    .venv/bin/python bench/bench_rdp.py                  # everything (about 3 minutes)
    .venv/bin/python bench/bench_rdp.py --no-pcscd       # in-process flows and the chart only
    .venv/bin/python bench/bench_rdp.py --rtt 50         # validate at 50 ms only
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from signin.rdp.calllog import Workload, read_log
from signin.rdp.chart import draw
from signin.rdp.flows import CardSource, lab_workloads, provision
from signin.rdp.interposer import run_traced
from signin.rdp.model import Link, predict, vpcd_link_predict
from vcard.host import PcscConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
DOCS = Path(__file__).resolve().parent.parent / "docs"
CHART = DOCS / "rdp-signin"
TRACES = DOCS / "rdp-traces"
PIN = "123456"
# The targets at 250 ms / 4 Mbit/s: the field report's order for the unoptimised CSP (minutes),
# and for the Base CSP a warm logon within 2 s (<= 8 round trips) and a cold one within 5 s.
TARGETS = {"naive": "minutes (field: 4-7 min)", "cold": "<= 5 s, <= 25 calls", "warm": "<= 2 s, <= 8 calls"}


def clients(profile: str, reader: str, scratch: Path) -> dict[str, list[str]]:
    data = scratch / "data"
    data.write_bytes(b"logon")
    p11 = ["pkcs11-tool", "--module", MODULE, "--slot-description", reader]
    found = {
        "OpenSC pkcs11-tool --sign": [
            *p11, "-l", "-p", PIN, "--sign", "-m", "SHA256-RSA-PKCS",
            "-i", str(data), "-o", str(scratch / "sig"),
        ],
        "OpenSC pkcs11-tool -L": ["pkcs11-tool", "--module", MODULE, "-L"],
        "vcard md sign (pyscard)": [
            sys.executable, "-m", "vcard", "md", "sign", "--reader", reader, "--pin", PIN, "--text", "logon",
        ],
    }  # fmt: skip
    if profile == "piv":
        found["yubico-piv-tool -a status"] = ["yubico-piv-tool", "-r", reader, "-a", "status"]
    return found


@contextlib.contextmanager
def pcscd_reader(profile: str) -> Iterator[str]:
    """One provisioned `vcard run` card on slot 0, alone (OpenSC scans every reader it sees)."""
    from vcard.testing import exclusive_slots, running_card

    with exclusive_slots(), running_card(profile, 0) as reader:
        provision(CardSource(profile, lambda: PcscConnection(reader), profile))
        yield reader


def measure_clients(rtts: list[float], scratch: Path) -> list[Workload]:
    """Trace every client at 0 ms, then under real per-call delay; print model vs measurement."""
    traced: list[Workload] = []
    print(f"\n{'client':<34} {'calls':>5} {'APDUs':>5} {'RTT':>6} {'model':>8} {'measured':>9} {'error':>7}")
    for profile in ("piv", "gids"):
        with pcscd_reader(profile) as reader:
            for name, command in clients(profile, reader, scratch).items():
                label = f"{name} ({profile.upper()})"
                base = run_traced(command, scratch / "0.jsonl", 0.0, quiet=True)
                if base.exit_code != 0:
                    print(f"{label:<34} exit {base.exit_code}: not measured")
                    continue
                work = Workload.from_log(read_log(base.log), label)
                if "--sign" in name:  # kept for `vcard rdp chart --log` (docs/rdp.md)
                    TRACES.mkdir(exist_ok=True)
                    (TRACES / f"p11-sign-{profile}.jsonl").write_bytes(base.log.read_bytes())
                work.local_seconds = own_time(command, scratch / "0.jsonl")
                traced.append(work)
                print(
                    f"{label:<34} {work.remote_calls:>5} {work.apdus:>5} {0:>4}ms"
                    f" {'':>8} {work.local_seconds:>8.2f}s"
                )
                for rtt in rtts:
                    timed = run_traced(command, scratch / f"{rtt}.jsonl", rtt, quiet=True)
                    # the model on this run's calls (OpenSC's polling varies by a few calls per run)
                    # with the undelayed runs' own time
                    same_run = Workload.from_log(read_log(timed.log), label)
                    same_run.local_seconds = work.local_seconds
                    expected = predict(same_run, Link(rtt / 1000))
                    error = (timed.wall_seconds - expected) / expected * 100
                    print(
                        f"{label:<34} {same_run.remote_calls:>5} {same_run.apdus:>5} {rtt:>4g}ms"
                        f" {expected:>7.2f}s {timed.wall_seconds:>8.2f}s {error:>+6.1f}%"
                    )
    return traced


def own_time(command: list[str], log: Path, runs: int = 3) -> float:
    """The undelayed wall time of `command`: the median of a few runs (process start-up varies)."""
    times = []
    for _ in range(runs):
        run = run_traced(command, log, 0.0, quiet=True)
        if run.exit_code != 0:
            raise SystemExit(f"`{' '.join(command)}` exited with {run.exit_code}")
        times.append(run.wall_seconds)
    return statistics.median(times)


def measure_link_delay(rtts: list[float], scratch: Path) -> None:
    """`vcard run --link-delay`: a remote reader, one round trip per vpcd frame with a reply.

    The prediction (`vpcd_link_predict`): the undelayed run's own time + (APDUs + 1 ATR request
    at power-up + 2 per warm reset the log shows) x RTT, stretched by the share of the link
    pcscd's presence polls take.
    """
    from vcard.testing import exclusive_slots, running_card

    state = scratch / "link-state"
    print(f"\n{'vpcd link delay':<34} {'APDUs':>5} {'RTT':>6} {'model':>8} {'measured':>9} {'error':>7}")
    with exclusive_slots():
        with running_card("piv", 0, ["--state", str(state)]) as reader:
            provision(CardSource("piv", lambda: PcscConnection(reader), "piv"))
            commands = clients("piv", reader, scratch)
            own = {}
            for name, command in commands.items():
                own[name] = own_time(command, scratch / "link-0.jsonl")
        for rtt in rtts:
            with running_card("piv", 0, ["--state", str(state), "--link-delay", f"{rtt:g}"]):
                for name, command in commands.items():
                    timed = run_traced(command, scratch / f"link-{rtt}.jsonl", quiet=True)
                    run = Workload.from_log(read_log(timed.log))
                    apdus = run.apdus
                    expected = vpcd_link_predict(own[name], apdus, rtt / 1000, resets=run.resets)
                    error = (timed.wall_seconds - expected) / expected * 100
                    label = f"{name} (PIV)"
                    print(
                        f"{label:<34} {apdus:>5} {rtt:>4g}ms {expected:>7.2f}s"
                        f" {timed.wall_seconds:>8.2f}s {error:>+6.1f}%"
                    )


def measure_kinit(scratch: Path) -> list[Workload]:
    """kinit (MIT PKINIT through OpenSC) against a private KDC, one traced run per profile."""
    from signin import card as card_module
    from signin import enroll as enroll_module
    from signin.ca import init_ca
    from signin.kdc import OPENSC_PKCS11, Kdc, missing_tools
    from vcard.testing import exclusive_slots, running_card

    if missing_tools():
        print(f"\nkinit not measured: missing {', '.join(missing_tools())} (make system-deps)")
        return []
    traced: list[Workload] = []
    print(f"\n{'kinit through OpenSC':<34} {'calls':>5} {'APDUs':>5} {'own':>7} {'@250ms/4Mbit':>13}")
    with Kdc.start(scratch / "kdc", init_ca(scratch / "ca"), eku_checking="scLogin", allow_upn=True) as kdc:
        kdc.add_principal("alice")
        for profile in ("piv", "gids"):
            with exclusive_slots(), running_card(profile, 0) as reader:
                with card_module.open_card(reader=reader, writable=True) as card_data:
                    principal = f"alice@{kdc.realm}"
                    enroll_module.enroll(card_data, profile, principal, "windows", PIN.encode(), ca=kdc.ca)
                command = ["kinit", "-X", f"X509_user_identity=PKCS11:{OPENSC_PKCS11}", f"alice@{kdc.realm}"]
                TRACES.mkdir(exist_ok=True)
                log = TRACES / f"kinit-{profile}.jsonl"
                run = run_traced(command, log, stdin=f"{PIN}\n".encode(), quiet=True, base_env=kdc.env)
                kdc.destroy_tickets()
                if run.exit_code != 0:
                    print(f"kinit ({profile.upper()}) exit {run.exit_code}: not measured\n{kdc.log()}")
                    continue
                work = Workload.from_log(read_log(log), f"OpenSC kinit ({profile.upper()})")
                work.local_seconds = run.wall_seconds
                traced.append(work)
                seconds = predict(work, Link(0.25, 4e6))
                print(
                    f"{work.name:<34} {work.remote_calls:>5} {work.apdus:>5} {work.local_seconds:>6.2f}s"
                    f" {seconds:>12.1f}s"
                )
    return traced


def in_process_workloads(profile: str) -> list[Workload]:
    """The minidriver flows on a fresh in-process card of `profile`."""
    card = VirtualCard.open(load_profile(profile), None, ephemeral=True)
    try:
        return lab_workloads(card.card, profile)
    finally:
        card.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-pcscd", action="store_true", help="Skip the real clients (no pcscd needed).")
    parser.add_argument(
        "--rtt", type=float, action="append", help="Real-delay RTT in ms (default 50 and 250)."
    )
    parser.add_argument("--link-only", action="store_true", help="Only the vpcd link-delay validation.")
    parser.add_argument("--chart", type=Path, default=CHART, help="Output stem of the chart.")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the `vcard run` cards are stopped and the vpcd lock released
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    if args.link_only:
        with tempfile.TemporaryDirectory(prefix="vcard-rdp-bench-") as scratch:
            measure_link_delay(args.rtt or [50.0, 250.0], Path(scratch))
        return
    link = Link(0.25, 4e6)
    workloads = in_process_workloads("piv") + in_process_workloads("gids")[:3]
    print(f"{'minidriver flow (in-process)':<34} {'calls':>5} {'APDUs':>5} {'@250ms/4Mbit':>13}  target")
    for work in workloads:
        seconds = predict(work, link)
        target = next((t for key, t in TARGETS.items() if key in work.name), "")
        shown = f"{seconds / 60:>9.1f} min" if seconds >= 60 else f"{seconds:>12.1f}s"
        print(f"{work.name:<34} {work.remote_calls:>5} {work.apdus:>5} {shown}  {target}")
    real: list[Workload] = []
    if not args.no_pcscd:
        with tempfile.TemporaryDirectory(prefix="vcard-rdp-bench-") as scratch:
            real = measure_clients(args.rtt or [50.0, 250.0], Path(scratch))
            measure_link_delay(args.rtt or [50.0, 250.0], Path(scratch))
            real += measure_kinit(Path(scratch))
    piv = [w for w in workloads if "GIDS" not in w.name]
    chosen = piv + [w for w in real if "pkcs11-tool --sign" in w.name or "kinit" in w.name]
    for path in draw(chosen, args.chart):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
