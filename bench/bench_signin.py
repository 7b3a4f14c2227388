"""Sign-in cost: APDUs and SCard calls of our Windows-path sign-in vs `kinit` through OpenSC, PIV and GIDS.

Every flow signs in for real at a private MIT KDC (signin/kdc.py) with a card run by
`vcard run` behind pcscd; the KDC round trip makes no SCard call and is left out of the
counts. Rows:

- ours, cold: a fresh `vcard signin` process (fresh PC/SC context, empty minidriver data
  cache), discovery by ATR only (the card's ATR registered, as after Windows has seen the
  card once: `--registered-atr`), connect to release;
- ours, cold, full discovery: the same without a registered ATR (Windows' first insertion:
  SC-PnP, EF.ATR, PIV/GIDS SELECTs);
- ours, warm: a second sign-in on the same card context (what a logon costs after the
  credential provider enumerated the card at insertion): freshness check, VERIFY, sign;
- kinit + OpenSC: unmodified `kinit -X X509_user_identity=PKCS11:opensc-pkcs11.so`, its SCard
  calls counted by the interposer of `vcard rdp trace`.

Goal: warm <= 8 SCard calls, cold <= 25.

    .venv/bin/python bench/bench_signin.py            # about 30 s
    .venv/bin/python bench/bench_signin.py --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from signin import ca as ca_module
from signin import card as card_module
from signin import enroll as enroll_module
from signin import flow
from signin.kdc import OPENSC_PKCS11, Kdc, missing_tools
from signin.rdp.calllog import LOCAL_CALLS, Workload, read_log
from signin.rdp.interposer import run_traced
from vcard.host import CallMeter, PcscConnection
from vcard.testing import exclusive_slots, running_card

PIN = "123456"
USER = "alice"
WARM_GOAL, COLD_GOAL = 8, 25


def row(name: str, calls: dict[str, int], ok: bool) -> dict[str, Any]:
    return {
        "flow": name,
        "ok": ok,
        "apdus": calls.get("SCardTransmit", 0),
        "scard_calls": sum(calls.values()),
        "calls": dict(sorted(calls.items())),
    }


def ours_fresh_process(kdc: Kdc, reader: str, scratch: Path, registered: bool) -> dict[str, int]:
    """`vcard signin` in its own process; card calls from its --json report (no KDC step calls)."""
    command = [
        sys.executable, "-m", "vcard", "signin", "--reader", reader, "--user", f"{USER}@{kdc.realm}",
        "--kdc", f"127.0.0.1:{kdc.port}", "--anchor", str(kdc.directory / "ca.crt"),
        "--ccache", str(scratch / "ours.cc"), "--pin-stdin", "--json",
        *(["--registered-atr"] if registered else []),
    ]  # fmt: skip
    done = subprocess.run(command, input=f"{PIN}\n", capture_output=True, text=True, timeout=120, check=False)
    try:
        document = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"vcard signin failed ({done.returncode}): {done.stdout}{done.stderr}") from None
    if not document["ok"]:
        raise SystemExit(f"vcard signin failed: {document['error']}")
    calls: dict[str, int] = document["card_cost"]["calls"]
    return calls


def ours_warm(kdc: Kdc, reader: str, scratch: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Two sign-ins on one card context in this process: (first, second) card calls, release excluded."""
    connection = PcscConnection(reader, CallMeter())
    session = flow.SignInSession(connection)
    options = flow.Options(
        f"{USER}@{kdc.realm}",
        ("127.0.0.1", kdc.port),
        [kdc.ca.certificate],
        scratch / "warm.cc",
        known_atrs=(flow.registered_atr(connection.atr),),
    )
    first = session.sign_in(options, PIN.encode())
    second = session.sign_in(options, PIN.encode())
    session.close()
    for result in (first, second):
        if result.error is not None:
            raise SystemExit(f"sign-in failed: {result.error.step}: {result.error}")
    return first.card_totals(), second.card_totals()


def kinit(kdc: Kdc, scratch: Path) -> tuple[dict[str, int], bool]:
    command = ["kinit", "-X", f"X509_user_identity=PKCS11:{OPENSC_PKCS11}", f"{USER}@{kdc.realm}"]
    kdc.destroy_tickets()
    pin = f"{PIN}\n".encode()
    run = run_traced(command, scratch / "kinit.jsonl", stdin=pin, quiet=True, base_env=kdc.env)
    work = Workload.from_log(read_log(run.log))
    remote = Counter({name: count for name, count in work.calls.items() if name not in LOCAL_CALLS})
    return dict(remote), run.exit_code == 0 and f"krbtgt/{kdc.realm}@{kdc.realm}" in kdc.klist()


def measure(kdc: Kdc, profile: str, scratch: Path) -> list[dict[str, Any]]:
    with running_card(profile, 0) as reader:
        with card_module.open_card(reader=reader, writable=True) as card_data:
            enroll_module.enroll(
                card_data, profile, f"{USER}@{kdc.realm}", "windows", PIN.encode(), ca=kdc.ca
            )
        rows = [
            row("ours, cold (ATR registered)", ours_fresh_process(kdc, reader, scratch, True), True),
            row("ours, cold (full discovery)", ours_fresh_process(kdc, reader, scratch, False), True),
        ]
        _, warm = ours_warm(kdc, reader, scratch)
        rows.append(row("ours, warm (same context)", warm, True))
        calls, ok = kinit(kdc, scratch)
        rows.append(row("kinit + OpenSC", calls, ok))
    for entry in rows:
        entry["card"] = profile
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"needs {', '.join(missing)}: run `make system-deps`", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-signin-") as temporary, exclusive_slots():
        scratch = Path(temporary)
        authority = ca_module.init_ca(scratch / "ca")
        with Kdc.start(scratch / "kdc", authority, eku_checking="scLogin", allow_upn=True) as kdc:
            kdc.add_principal(USER)
            for profile in ("piv", "gids"):
                rows.extend(measure(kdc, profile, scratch))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'card':<5} {'flow':<29} {'APDUs':>5} {'SCard':>5}  calls by name (KDC round trip excluded)")
    for entry in rows:
        names = ", ".join(f"{name.removeprefix('SCard')} {count}" for name, count in entry["calls"].items())
        status = "" if entry["ok"] else "  (sign-in FAILED)"
        counts = f"{entry['apdus']:>5} {entry['scard_calls']:>5}"
        print(f"{entry['card']:<5} {entry['flow']:<29} {counts}  {names}{status}")
    for entry in rows:
        goals = {"ours, warm (same context)": WARM_GOAL, "ours, cold (ATR registered)": COLD_GOAL}
        goal = goals.get(entry["flow"])
        if goal is not None:
            verdict = "within" if entry["scard_calls"] <= goal else "OVER"
            print(f"goal {entry['card']} {entry['flow']}: {entry['scard_calls']} <= {goal}? {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
