"""SCard call logs (the interposer's JSON lines) and workloads: what a run asks of the link.

A log line is one call: `{"call", "rc", "sent", "received", "start", "end", "pid"}`
(and `"local": true` for a call that an RDP server answers itself); `run_traced` adds
a last line `{"run": {"command", "exit", "wall_seconds", "rtt_ms"}}`. A `Workload` is
what the redirection model needs from a run, whoever measured it: calls by name, bytes
each way and the time the run took on its own (no link delay). The host stack's
`CallMeter` gives the same numbers for the minidriver flows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# SCARD_RESET_CARD and SCARD_UNPOWER_CARD (same values in pcsc-lite and WinSCard)
RESETTING = frozenset({1, 2})

# MS-RDPESC has no call for freeing memory: the server's WinSCard frees its own buffers.
LOCAL_CALLS = frozenset({"SCardFreeMemory"})

# The order pcsc-spy and docs/rdp.md list calls in (others follow alphabetically).
CALL_ORDER = (
    "SCardEstablishContext",
    "SCardIsValidContext",
    "SCardListReaderGroups",
    "SCardListReaders",
    "SCardGetStatusChange",
    "SCardCancel",
    "SCardConnect",
    "SCardReconnect",
    "SCardControl",
    "SCardBeginTransaction",
    "SCardTransmit",
    "SCardEndTransaction",
    "SCardStatus",
    "SCardGetAttrib",
    "SCardSetAttrib",
    "SCardDisconnect",
    "SCardReleaseContext",
    "SCardFreeMemory",
)


class CallLogError(ValueError):
    """A call log line that cannot be read: names the file, the line and the problem."""


@dataclass(frozen=True)
class Call:
    name: str
    rc: int
    sent: int
    received: int
    start: float
    end: float
    pid: int
    local: bool = False
    disposition: int | None = None  # SCardDisconnect/EndTransaction/Reconnect: what they do with the card


@dataclass
class CallLog:
    path: Path
    calls: list[Call]
    run: dict[str, Any] | None = None


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "call": str,
    "rc": int,
    "sent": int,
    "received": int,
    "start": (int, float),
    "end": (int, float),
    "pid": int,
}


def read_log(path: Path) -> CallLog:
    """Parse a call log; any malformed line is refused with its file and line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CallLogError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CallLogError(f"{path}: not a call log (not UTF-8 text)") from None
    log = CallLog(path, [])
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise CallLogError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(item, dict):
            raise CallLogError(f"{where}: expected a JSON object")
        if "run" in item:
            if not isinstance(item["run"], dict):
                raise CallLogError(f"{where}: 'run' must be an object")
            log.run = item["run"]
            continue
        for name, kind in _FIELDS.items():
            value = item.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CallLogError(f"{where}: field {name!r} missing or not {_kind_name(kind)}")
        if item["sent"] < 0 or item["received"] < 0:
            raise CallLogError(f"{where}: negative byte count")
        disposition = item.get("disposition")
        if disposition is not None and (not isinstance(disposition, int) or isinstance(disposition, bool)):
            raise CallLogError(f"{where}: field 'disposition' not an integer")
        log.calls.append(
            Call(
                item["call"], item["rc"], item["sent"], item["received"],
                float(item["start"]), float(item["end"]), item["pid"], bool(item.get("local", False)),
                disposition,
            )
        )  # fmt: skip
    return log


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "a number" if isinstance(kind, tuple) else {str: "a string", int: "an integer"}[kind]


@dataclass
class Workload:
    """What a run costs a redirected link: calls by name, bytes each way, and its own time."""

    name: str
    calls: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0
    local_seconds: float = 0.0
    resets: int = 0  # successful calls that reset or unpowered the card (SCARD_RESET_CARD / UNPOWER_CARD)

    @property
    def remote_calls(self) -> int:
        """Calls that cross the link (one request/response each)."""
        return sum(count for call, count in self.calls.items() if call not in LOCAL_CALLS)

    @property
    def apdus(self) -> int:
        return self.calls["SCardTransmit"]

    @classmethod
    def from_log(cls, log: CallLog, name: str | None = None) -> Workload:
        """Counts from the calls; local time from the run's wall time (or the calls' span)."""
        work = cls(name or (" ".join(log.run["command"]) if log.run else log.path.name))
        for call in log.calls:
            work.calls[call.name] += 1
            if call.disposition in RESETTING and call.rc == 0:
                work.resets += 1
            if not call.local:
                work.bytes_sent += call.sent
                work.bytes_received += call.received
        if log.run is not None and isinstance(log.run.get("wall_seconds"), int | float):
            work.local_seconds = float(log.run["wall_seconds"])
        elif log.calls:
            work.local_seconds = max(c.end for c in log.calls) - min(c.start for c in log.calls)
        return work

    @classmethod
    def from_meter(cls, name: str, snapshot: Mapping[str, Any], seconds: float = 0.0) -> Workload:
        """From `CallMeter.snapshot()`: every call the host stack counts crosses the link."""
        return cls(
            name, Counter(snapshot["calls"]), snapshot["bytes_sent"], snapshot["bytes_received"], seconds
        )


def ordered(calls: Iterable[str]) -> list[str]:
    rank = {name: index for index, name in enumerate(CALL_ORDER)}
    return sorted(set(calls), key=lambda name: (rank.get(name, len(rank)), name))


def summary_table(log: CallLog) -> str:
    """Calls by type: count, failures, bytes each way, time inside the calls (ms)."""
    rows: dict[str, list[float]] = {}
    for call in log.calls:
        row = rows.setdefault(call.name, [0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += call.rc != 0
        row[2] += call.sent
        row[3] += call.received
        row[4] += (call.end - call.start) * 1000
    lines = [f"{'call':<24} {'count':>6} {'failed':>6} {'sent':>8} {'received':>9} {'ms':>9}"]
    for name in ordered(rows):
        count, failed, sent, received, ms = rows[name]
        note = "  (local on an RDP server)" if name in LOCAL_CALLS else ""
        lines.append(
            f"{name:<24} {count:>6.0f} {failed:>6.0f} {sent:>8.0f} {received:>9.0f} {ms:>9.1f}{note}"
        )
    total = Workload.from_log(log)
    lines.append(
        f"{'total':<24} {len(log.calls):>6} {'':>6} {total.bytes_sent:>8} {total.bytes_received:>9}"
        f"  -> {total.remote_calls} round trips, {total.apdus} APDUs"
    )
    if log.run is not None:
        lines.append(
            f"run: exit {log.run.get('exit')}, {float(log.run.get('wall_seconds', 0.0)):.3f} s wall"
            f" at {float(log.run.get('rtt_ms', 0.0)):g} ms per call"
        )
    return "\n".join(lines)
