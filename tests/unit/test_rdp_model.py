"""The redirection model and the call-log reader: arithmetic, units and refusal of bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from signin.rdp.calllog import CallLogError, Workload, read_log, summary_table
from signin.rdp.model import (
    REQUEST_OVERHEAD,
    RESPONSE_OVERHEAD,
    Link,
    parse_bandwidth,
    parse_duration,
    predict,
)
from vcard.rdp_cli import rdp


def call(name: str, sent: int = 0, received: int = 0, start: float = 100.0, **extra: object) -> str:
    item = {"call": name, "rc": 0, "sent": sent, "received": received, "start": start, "end": start + 0.001,
            "pid": 7, **extra}  # fmt: skip
    return json.dumps(item)


def write_log(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_log_counts_calls_and_bytes_and_keeps_free_memory_local(tmp_path: Path) -> None:
    path = write_log(
        tmp_path,
        [
            call("SCardEstablishContext"),
            call("SCardTransmit", 13, 258),
            call("SCardTransmit", 5, 2),
            call("SCardFreeMemory", local=True),
            json.dumps(
                {"run": {"command": ["pkcs11-tool", "-L"], "exit": 0, "wall_seconds": 0.5, "rtt_ms": 0}}
            ),
        ],
    )
    work = Workload.from_log(read_log(path))
    assert work.name == "pkcs11-tool -L"
    assert work.calls == Counter({"SCardEstablishContext": 1, "SCardTransmit": 2, "SCardFreeMemory": 1})
    assert work.remote_calls == 3 and work.apdus == 2
    assert (work.bytes_sent, work.bytes_received) == (18, 260)
    assert work.local_seconds == 0.5
    table = summary_table(read_log(path))
    assert "SCardFreeMemory" in table and "local on an RDP server" in table
    assert "3 round trips, 2 APDUs" in table


def test_prediction_is_own_time_plus_round_trips_plus_wire_time() -> None:
    work = Workload("x", Counter({"SCardTransmit": 10, "SCardFreeMemory": 4}), 1000, 3000, 0.2)
    assert predict(work, Link(0.25)) == pytest.approx(0.2 + 10 * 0.25)
    wire_bits = (4000 + 10 * (REQUEST_OVERHEAD + RESPONSE_OVERHEAD)) * 8
    assert predict(work, Link(0.25, 4e6)) == pytest.approx(0.2 + 2.5 + wire_bits / 4e6)


def test_units() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("0.25s") == pytest.approx(0.25)
    assert parse_duration("50") == pytest.approx(0.05)
    assert parse_bandwidth("4mbit") == 4e6
    assert parse_bandwidth("512kbit/s") == 512e3
    assert parse_bandwidth("4Mbps") == 4e6
    for bad in ("fast", "-5ms", "5 parsecs"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
    for bad in ("0mbit", "4 furlongs"):
        with pytest.raises(ValueError, match="not a bandwidth"):
            parse_bandwidth(bad)
    with pytest.raises(ValueError):
        Link(-1.0)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"call": "SCardTransmit", "rc": 0}), "field 'sent' missing"),
        (call("SCardTransmit").replace('"rc": 0', '"rc": "0"'), "field 'rc' missing or not an integer"),
        (call("SCardTransmit", sent=-1), "negative byte count"),
        (call("SCardDisconnect", disposition="reset"), "'disposition' not an integer"),
    ],
)
def test_bad_log_lines_are_refused_with_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = write_log(tmp_path, [call("SCardEstablishContext"), line])
    with pytest.raises(CallLogError, match=problem) as error:
        read_log(path)
    assert str(error.value).startswith(f"{path}:2: ")


def test_model_command_prints_prediction_and_refuses_bad_options(tmp_path: Path) -> None:
    lines = [call("SCardTransmit", 10, 10, start=100.0 + i) for i in range(4)]
    path = write_log(tmp_path, [*lines, json.dumps({"run": {"command": ["t"], "wall_seconds": 1.0}})])
    runner = CliRunner()
    result = runner.invoke(rdp, ["model", str(path), "--rtt", "250ms"])
    assert result.exit_code == 0, result.output
    assert "remote calls: 4 (4 APDUs)" in result.output
    assert "predicted at 250 ms RTT, unlimited bandwidth: 2.00 s" in result.output
    bad = runner.invoke(rdp, ["model", str(path), "--rtt", "soon"])
    assert bad.exit_code == 2 and "'soon' is not a duration" in bad.output
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("nope\n")
    refused = runner.invoke(rdp, ["model", str(garbage), "--rtt", "1ms"])
    assert refused.exit_code == 1 and f"{garbage}:1: not JSON" in refused.output
    assert "Traceback" not in refused.output


def test_vpcd_link_prediction_counts_apdus_power_up_and_pcscd_polls() -> None:
    from signin.rdp.model import PCSCD_POLL_SECONDS, vpcd_link_predict

    assert vpcd_link_predict(0.5, 40, 0.0) == 0.5
    # 40 APDUs + 1 ATR request at 250 ms, while polls take 0.25 s of every 0.4 + 0.375 s
    share = 0.25 / (PCSCD_POLL_SECONDS + 0.375)
    assert vpcd_link_predict(0.5, 40, 0.25) == pytest.approx(0.5 + 41 * 0.25 / (1 - share))
    assert vpcd_link_predict(0.5, 40, 0.25, power_ups=0) < vpcd_link_predict(0.5, 40, 0.25)
    with pytest.raises(ValueError):
        vpcd_link_predict(0.5, 40, -0.1)


def test_a_warm_reset_costs_two_link_round_trips(tmp_path: Path) -> None:
    from signin.rdp.model import RESET_ROUND_TRIPS, vpcd_link_predict

    lines = [
        call("SCardTransmit"),
        call("SCardEndTransaction", disposition=0),  # leave: no reset
        call("SCardEndTransaction", disposition=1),  # reset
        call("SCardDisconnect", disposition=1, rc=6),  # refused: nothing happened to the card
        call("SCardDisconnect", disposition=2),  # unpower
    ]
    work = Workload.from_log(read_log(write_log(tmp_path, lines)))
    assert work.resets == 2
    assert RESET_ROUND_TRIPS == 2
    assert vpcd_link_predict(0.0, 1, 0.1, power_ups=0, resets=work.resets) == pytest.approx(
        vpcd_link_predict(0.0, 1 + 2 * RESET_ROUND_TRIPS, 0.1, power_ups=0)
    )
