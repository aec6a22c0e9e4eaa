"""The OTLP/HTTP collector as the export thread sees it: one kept-alive connection, one POST per batch."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import socket
import ssl
import urllib.parse

from function.tracing.config import TracingConfig

_RESET = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Collector:
    """POSTs ``ExportTraceServiceRequest`` bytes to the traces URL; never retries a batch the collector
    saw (a dead or slow collector costs dropped spans, not a backlog)."""

    def __init__(self, config: TracingConfig) -> None:
        url = urllib.parse.urlsplit(config.endpoint)
        self._host, self._port = url.hostname or "", url.port
        self._target = url.path + (f"?{url.query}" if url.query else "")
        self.where = f"{url.scheme}://{url.netloc.rpartition('@')[2]}{url.path}"  # for logs: no credentials
        self._context = ssl.create_default_context(cafile=config.certificate) if url.scheme == "https" else None
        self._timeout = config.timeout_seconds
        self._gzip = config.gzip
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": "function.tracing OTLP/HTTP"}
        self._headers.update(config.headers)
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> str | None:
        """Send one batch: None when the collector took it (2xx), else why not, in a few words."""
        if self._gzip:
            body = gzip.compress(body, compresslevel=6)
        reused = self._connection is not None
        answer = self._exchange(body)
        if reused and isinstance(answer, _RESET):  # a kept-alive connection the collector had closed
            answer = self._exchange(body)
        if isinstance(answer, Exception):
            return f"{type(answer).__name__}: {answer}"
        return None if 200 <= answer < 300 else f"HTTP {answer}"

    def _exchange(self, body: bytes) -> int | OSError | http.client.HTTPException:
        """The answer's status, or what went wrong (the connection is then closed)."""
        try:
            connection = self._connection or self._connect()
            connection.request("POST", self._target, body, self._headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return exc
        if response.will_close:
            self.close()
        return response.status

    def _connect(self) -> http.client.HTTPConnection:
        if self._context is not None:
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        else:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def abort(self) -> None:
        """From another thread: end a POST that waits on a hung collector (its socket read fails at once)."""
        sock = getattr(self._connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)
