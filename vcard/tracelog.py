"""The handler `--trace` writes with: one line per record, as the default log format, at less cost.

A traced card logs a record for every APDU. `logging.Formatter` formats the time with strftime for
every record and `StreamHandler` flushes after each write; at one record per APDU those two were
most of what tracing cost. This handler formats the date and time once per second and writes each
entry with a single call, so the text is the same as `logging.basicConfig`'s lines.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

LINE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class TraceLineHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._second = -1
        self._second_text = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            second = int(record.created)
            if second != self._second:
                self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
                self._second = second
            self.stream.write(
                f"{self._second_text},{int(record.msecs):03d} {record.name} {record.levelname} "
                f"{record.getMessage()}\n"
            )
        except Exception:
            self.handleError(record)
