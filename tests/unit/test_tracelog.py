"""The --trace handler writes exactly the lines the default log format would, one write per entry."""

from __future__ import annotations

import io
import logging

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
