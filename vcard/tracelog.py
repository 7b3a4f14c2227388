"""The handler `--trace` writes with: one line per record, as the default log format, at less cost.

A traced card logs a record for every APDU. `logging.Formatter` formats the time with strftime for
every record and `StreamHandler` flushes after each write; at one record per APDU those two were
most of what tracing cost. This handler formats the date and time once per second and writes each
entry with a single call, so the text is the same as `logging.basicConfig`'s lines.

The card's per-APDU entries can skip `logging` altogether: `vcard run --trace` hands the card
`TraceLineHandler.entry` as its trace sink, which writes the same line without building a
`LogRecord` (the largest remaining cost of a traced APDU). Everything else logged to
`vcard.trace` (PIN-state changes) still comes through `emit`, to the same stream.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

LINE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
TRACE_LOGGER = "vcard.trace"


class TraceLineHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._second = -1
        self._second_text = ""

    def _line(self, created: float, name: str, level: str, message: str) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return f"{self._second_text},{int((created - second) * 1000):03d} {name} {level} {message}\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self._line(record.created, record.name, record.levelname, record.getMessage()))
        except Exception:
            self.handleError(record)

    def entry(self, message: str) -> None:
        """One DEBUG line of the `vcard.trace` logger, written without a LogRecord."""
        created = time.time()
        with self.lock:  # type: ignore[union-attr]  # Handler.createLock made it; cards in several threads
            try:
                self.stream.write(self._line(created, TRACE_LOGGER, "DEBUG", message))
            except Exception:
                self.handleError(logging.makeLogRecord({"name": TRACE_LOGGER, "msg": message}))
