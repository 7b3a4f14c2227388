"""RDP lab against real clients: SCard call counts of OpenSC/yubico-piv-tool/pyscard through the
interposer, the minidriver's own meter against the interposer, and the model against real delay."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import CardFactory

from signin.rdp.calllog import CALL_ORDER, Workload, read_log
from signin.rdp.flows import CardSource, provision
from signin.rdp.interposer import run_traced
from signin.rdp.model import Link, predict
from vcard.host import PcscConnection

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("pkcs11-tool", "yubico-piv-tool", "gcc")),
        reason="OpenSC, yubico-piv-tool or gcc missing",
    ),
]

MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
PIN = "123456"
# OpenSC 0.23's pkcs11-tool -l --sign (docs/rdp.md): its behaviour, not ours, hence ranges
P11_SIGN = {"piv": (80, 100, 33, 45), "gids": (135, 160, 45, 56)}


def provisioned(start_card: CardFactory, profile: str) -> str:
    reader = start_card(profile, 0).reader
    provision(CardSource(profile, lambda: PcscConnection(reader)))
    return reader


def p11_sign(reader: str, tmp_path: Path) -> list[str]:
    data = tmp_path / "data"
    data.write_bytes(b"logon")
    return [
        "pkcs11-tool", "--module", MODULE, "--slot-description", reader, "-l", "-p", PIN,
        "--sign", "-m", "SHA256-RSA-PKCS", "-i", str(data), "-o", str(tmp_path / "sig"),
    ]  # fmt: skip


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_pkcs11_tool_sign_call_counts(start_card: CardFactory, tmp_path: Path, profile: str) -> None:
    reader = provisioned(start_card, profile)
    run = run_traced(p11_sign(reader, tmp_path), tmp_path / "calls.jsonl", quiet=True)
    assert run.exit_code == 0
    log = read_log(run.log)
    work = Workload.from_log(log)
    low, high, apdu_low, apdu_high = P11_SIGN[profile]
    assert low <= work.remote_calls <= high
    assert apdu_low <= work.apdus <= apdu_high
    assert set(work.calls) <= set(CALL_ORDER)
    # every kind of call is counted, not just APDUs and transactions
    for kind in ("SCardEstablishContext", "SCardListReaders", "SCardGetStatusChange", "SCardConnect",
                 "SCardControl", "SCardDisconnect", "SCardReleaseContext"):  # fmt: skip
        assert work.calls[kind] > 0, kind
    assert work.calls["SCardBeginTransaction"] == work.calls["SCardEndTransaction"]
    assert work.bytes_sent > 0 and work.bytes_received > work.apdus * 2  # at least a status word each


def test_minidriver_meter_counts_what_the_interposer_sees(start_card: CardFactory, tmp_path: Path) -> None:
    """`vcard md sign --counts` prints its CallMeter; the interposer sees the same calls and bytes."""
    import re
    import shlex

    reader = provisioned(start_card, "piv")
    md_sign = [
        sys.executable,
        "-m",
        "vcard",
        "md",
        "sign",
        "--reader",
        reader,
        "--pin",
        PIN,
        "--text",
        "x",
        "--counts",
    ]
    errors = tmp_path / "stderr"
    command = ["sh", "-c", f"{shlex.join(md_sign)} 2>{shlex.quote(str(errors))}"]
    run = run_traced(command, tmp_path / "calls.jsonl", quiet=True)
    assert run.exit_code == 0, errors.read_text()
    match = re.search(
        r"# (\d+) APDUs, (\d+) SCard calls, (\d+) bytes sent, (\d+) bytes received", errors.read_text()
    )
    assert match, errors.read_text()
    apdus, calls, sent, received = map(int, match.groups())
    seen = Workload.from_log(read_log(run.log))
    assert seen.apdus == apdus > 0
    # the meter is printed before the closing SCardDisconnect + SCardReleaseContext
    assert seen.remote_calls == calls + 2
    assert seen.calls["SCardDisconnect"] == seen.calls["SCardReleaseContext"] == 1
    transmitted = [c for c in read_log(run.log).calls if c.name == "SCardTransmit"]
    assert sum(c.sent for c in transmitted) == sent
    assert sum(c.received for c in transmitted) == received


@pytest.mark.parametrize("client", ["pkcs11-tool --sign", "pkcs11-tool -L", "yubico-piv-tool status"])
def test_model_matches_real_per_call_delay(start_card: CardFactory, tmp_path: Path, client: str) -> None:
    """A small real RTT per call (the interposer's delay) against the model's prediction."""
    reader = provisioned(start_card, "piv")
    command = {
        "pkcs11-tool --sign": p11_sign(reader, tmp_path),
        "pkcs11-tool -L": ["pkcs11-tool", "--module", MODULE, "-L"],
        "yubico-piv-tool status": ["yubico-piv-tool", "-r", reader, "-a", "status"],
    }[client]
    base = run_traced(command, tmp_path / "0.jsonl", quiet=True)
    assert base.exit_code == 0
    own_time = Workload.from_log(read_log(base.log)).local_seconds
    rtt_ms = 20.0
    delayed = run_traced(command, tmp_path / "20.jsonl", rtt_ms, quiet=True)
    assert delayed.exit_code == 0
    # OpenSC's presence polling varies by a few SCardGetStatusChange calls from run to run, so
    # the model is given this run's calls (and the undelayed run's own time)
    log = read_log(delayed.log)
    work = Workload.from_log(log)
    work.local_seconds = own_time
    expected = predict(work, Link(rtt_ms / 1000))
    slowest = sorted(log.calls, key=lambda call: call.end - call.start)[-3:]
    detail = [(call.name, round(call.end - call.start, 3)) for call in slowest]
    assert delayed.wall_seconds == pytest.approx(expected, rel=0.05), (work.remote_calls, own_time, detail)
