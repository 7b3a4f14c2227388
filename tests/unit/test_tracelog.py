"""The --trace handler writes exactly the lines the default log format would, one write per entry."""

from __future__ import annotations

import io
import logging
import time

import pytest

from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.tracelog import LINE_FORMAT, TraceLineHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _record(created: float, message: str, *args: object) -> logging.LogRecord:
    record = logging.LogRecord("vcard.trace", logging.DEBUG, __file__, 1, message, args, None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def test_lines_match_the_default_format_across_second_boundaries() -> None:
    stream = CountingStream()
    handler = TraceLineHandler(stream)
    formatter = logging.Formatter(LINE_FORMAT)
    records = [
        _record(1_700_000_000.004, "> %s %s\n< %04X", "SELECT", "00A40400", 0x9000),
        _record(1_700_000_000.999, "second record"),
        _record(1_700_000_001.5, "next second"),
        _record(1_700_003_601.25, "an hour later"),
    ]
    for record in records:
        handler.handle(record)
    assert stream.getvalue() == "".join(formatter.format(record) + "\n" for record in records)
    assert stream.writes == len(records)  # a two-line entry is still one write


def test_a_failing_stream_is_reported_by_logging_not_raised() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = TraceLineHandler(Broken())
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign]
    handler.handle(_record(1_700_000_000.0, "entry"))
    assert len(errors) == 1


def test_entry_writes_the_line_a_trace_record_would(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = CountingStream()
    handler = TraceLineHandler(stream)
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    handler.entry("> SELECT 00 A4 04 00\n< 9000 SUCCESS (0.01 ms)")
    record = _record(1_700_000_000.25, "> SELECT 00 A4 04 00\n< 9000 SUCCESS (0.01 ms)")
    assert stream.getvalue() == logging.Formatter(LINE_FORMAT).format(record) + "\n"
    assert stream.writes == 1


def test_a_card_with_a_sink_traces_what_the_logger_would(caplog: pytest.LogCaptureFixture) -> None:
    """The sink gets exactly the entries the `vcard.trace` logger gets without one, secrets hidden."""
    commands = [bytes.fromhex("00A4040005A000000308"), bytes.fromhex("002000800831323334353637FFFF"), b"\x00"]
    logged = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    sunk = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    entries: list[str] = []
    sunk.card.trace_sink = entries.append
    with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
        for card in (logged, sunk):
            card.card.power_on()
            for command in commands:
                card.card.transmit(command)
    records = [record.getMessage() for record in caplog.records if record.name == "vcard.trace"]
    assert len(entries) == len(commands)
    assert [_without_timing(e) for e in entries] == [_without_timing(r) for r in records]
    assert not any("31 32 33 34" in entry for entry in entries)
    logged.close()
    sunk.close()


def _without_timing(entry: str) -> str:
    return entry.rsplit(" (", 1)[0]
