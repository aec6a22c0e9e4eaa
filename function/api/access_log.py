"""What the HTTP transport logs: one line per request (health probes left out), one per bad request."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from function.api.headers import SERVED_HEADERS, TRACEPARENT, trace_id_of
from function.api.paths import HEALTH_PATHS
from function.logs import stderr_lines

ACCESS_LOGGER = "function.access"
#: ``time.perf_counter()`` when the middleware took the request: the access line's duration
#: (aiohttp's own comes from ``loop.time()``, whole milliseconds under uvloop).
STARTED = web.RequestKey("started", float)


class AccessLogger(AbstractAccessLogger):
    """One line per request with method, path, status, duration, request id (and trace id); probes skipped.

    The line goes straight to the root's ``StderrLines`` handler when it has one, formatted by
    the same formatter as every other line: without the logging machinery (a LogRecord, the
    logger tree, filters) a line costs 5 µs instead of 17.
    """

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._lines = stderr_lines()

    def _wanted(self, request: web.BaseRequest) -> bool:
        return request.path not in HEALTH_PATHS and self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        if not self._wanted(request):
            return
        started = request.get(STARTED)  # absent when aiohttp answered before the app (a malformed request)
        if started is not None:
            elapsed = time.perf_counter() - started
        headers = response.headers
        trace_id = trace_id_of(headers.get(TRACEPARENT))
        self.write(request, response.status, elapsed, headers.get("X-Request-ID"), trace_id, headers)

    def write(
        self,
        request: web.BaseRequest,
        status: int,
        elapsed: float,
        request_id: str | None,
        trace_id: str | None,
        served_by: Mapping[str, str],
    ) -> None:
        """One access line (none for a probe); also used for requests that end without a response (499)."""
        if not self._wanted(request):
            return
        method, path = request.method, request.path
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "request_id": request_id,
            "remote": request.remote,
        }
        if trace_id is not None:
            fields["trace_id"] = trace_id
        for header, name in SERVED_HEADERS.items():
            value = served_by.get(header)
            if value is not None:
                fields[name] = value
        message = f"{method} {path} {status}"
        if self._lines is None:  # logging was set up elsewhere (an embedding app, a test harness)
            self.logger.info("%s", message, extra={"fields": fields})
        else:
            formatter = self._lines.line_formatter
            self._lines.write_line(formatter.line(time.time(), "INFO", self.logger.name, message, fields))


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs every unparseable request at ERROR with a traceback; one INFO line will do.

    Such requests are the client's fault (aiohttp already answered 400); a traceback each would
    let any client multiply the log volume and page whoever watches the errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = "malformed request answered %s: %s", (error.code, error.message)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_transport_logging() -> None:
    """Quiet aiohttp's per-request errors into single lines (once per process)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())
