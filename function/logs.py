"""Logging set-up: one JSON object per line (default) or plain text, written to stderr by a thread.

Used by the server and by the inference workers, so it imports nothing of aiohttp.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import IO, Any, cast

from function.jsonio import dumps


class _UtcClock:
    """ISO-8601 UTC timestamps with milliseconds; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int((created - second) * 1000):03d}Z"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """Structured fields passed as ``extra={"fields": {...}}``."""
    return getattr(record, "fields", None) or {}


class LineFormatter(logging.Formatter):
    """A formatter that can also build a line from its parts, with no LogRecord (the access log)."""

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any], exception: str = ""
    ) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else ""
        return self.line(
            record.created, record.levelname, record.name, record.getMessage(), fields_of(record), exception
        )


class JsonFormatter(LineFormatter):
    """One JSON object a line: time, level, logger, message, then the record's fields."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _UtcClock()

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any], exception: str = ""
    ) -> str:
        entry: dict[str, Any] = {"time": self._clock(created), "level": level, "logger": logger, "message": message}
        entry.update(fields)
        if exception:
            entry["exception"] = exception
        return dumps(entry).decode()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    r"""``text`` with control characters shown as escapes (``\n`` -> ``\x0a``): one line stays one line."""
    return _CONTROL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text
    )


class TextFormatter(LineFormatter):
    """For people: ``time LEVEL logger: message [key=value ...]``, times in UTC.

    Control characters in the message and the fields are escaped, so that nothing a client sends
    (a ``%0a`` in a path) can start a line of its own; only a traceback spans lines.
    """

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any], exception: str = ""
    ) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{stamp},{int((created - int(created)) * 1000):03d} {level} {logger}: {message}"
        text = escape_controls(text + (f" [{extra}]" if extra else ""))
        return text + (f"\n{exception}" if exception else "")


class StderrLines(logging.Handler):
    """stderr, written by a thread of its own a batch of lines at a time, never blocking the caller.

    A line waits at most ``FLUSH_SECONDS`` (a warning or an error wakes the writer at once), so
    one ``write`` carries many lines and no syscall sits on a request's path. When nobody reads
    stderr (a full pipe) the writer blocks, the waiting lines grow to ``BUFFER_BYTES``, and from
    then on new lines are dropped and counted in ``dropped`` instead of stopping the caller.
    """

    FLUSH_SECONDS = 0.1
    BUFFER_BYTES = 1024 * 1024
    EXIT_FLUSH_SECONDS = 2.0  # at exit, the most a last flush may wait for a stderr nobody reads

    def __init__(self, formatter: LineFormatter, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.stream = stream if stream is not None else sys.stderr
        self.dropped = 0
        self._lines: list[str] = []
        self._size = 0
        self._urgent = False
        self._writing = False
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._writer: threading.Thread | None = None  # started with the first line

    @property
    def line_formatter(self) -> LineFormatter:
        """The formatter, for callers that build lines without a LogRecord."""
        return cast(LineFormatter, self.formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record), urgent=record.levelno >= logging.WARNING)
        except Exception:
            self.handleError(record)

    def write_line(self, line: str, urgent: bool = False) -> None:
        """Queue one line for the writer; drop it (and count it) if the writer is stuck."""
        with self._lock:  # the condition's own lock: one Python frame fewer than `with self._wake`
            if self._size + len(line) > self.BUFFER_BYTES:
                self.dropped += 1
                return
            self._lines.append(line)
            self._size += len(line) + 1
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
                self._writer.start()
            if urgent:
                self._urgent = True
            if urgent or len(self._lines) == 1:
                self._wake.notify()

    def _write_forever(self) -> None:
        while True:
            with self._wake:
                while not self._lines:
                    self._wake.wait()
                if not self._urgent:
                    self._wake.wait(self.FLUSH_SECONDS)  # gather a batch; a warning ends the wait
                lines, self._lines, self._size, self._urgent = self._lines, [], 0, False
                self._writing = True
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:  # stderr closed or broken: nothing better to tell it to
                pass
            with self._wake:
                self._writing = False
                self._wake.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued line is written (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + (self.EXIT_FLUSH_SECONDS if timeout is None else timeout)
        with self._wake:
            if self._lines:
                self._urgent = True
                self._wake.notify_all()
            while (self._lines or self._writing) and (left := deadline - time.monotonic()) > 0:
                self._wake.wait(left)


def configure_logging(fmt: str, level: str) -> None:
    """Send every log record to stderr, one line each, in the chosen format."""
    # NOTE: the logging HOWTO's "Optimization" switches: no caller frame, thread or process
    # lookups per record. They halve the cost of an access line (27 -> 14 µs measured).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = StderrLines(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def stderr_lines() -> StderrLines | None:
    """The root logger's ``StderrLines`` handler, when ``configure_logging`` installed one."""
    return next((h for h in logging.getLogger().handlers if isinstance(h, StderrLines)), None)
