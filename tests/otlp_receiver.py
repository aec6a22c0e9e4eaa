"""A real OTLP/HTTP trace receiver for the tests: ``POST /v1/traces`` with ``application/x-protobuf`` (gzip
allowed), decoded with opentelemetry-proto; or one answering an error status; or a hung one (``hung_collector``)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

HOST = "127.0.0.1"


@dataclass
class Post:
    """One POST as the receiver saw it."""

    headers: dict[str, str]
    size: int  # bytes on the wire (Content-Length)
    peer: tuple[str, int]  # the client's address and port: the same port means a kept-alive connection
    request: ExportTraceServiceRequest


class OtlpReceiver:
    """On a free loopback port of the running event loop, as an async context manager."""

    def __init__(self, status: int = 200, ssl_context: ssl.SSLContext | None = None, keepalive: float = 75.0) -> None:
        self.status = status
        self.posts: list[Post] = []
        self._ssl = ssl_context
        self._keepalive = keepalive
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL: what ``OTEL_EXPORTER_OTLP_ENDPOINT`` names."""
        return f"{'https' if self._ssl else 'http'}://{HOST}:{self.port}"

    async def __aenter__(self) -> OtlpReceiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, keepalive_timeout=self._keepalive, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0, ssl_context=self._ssl)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        body = await request.read()  # aiohttp undoes a Content-Encoding: gzip
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        peer = request.transport.get_extra_info("peername") if request.transport else ("?", 0)
        self.posts.append(Post(dict(request.headers), request.content_length or 0, peer, message))
        self._arrived.set()
        if self.status != 200:
            return web.Response(status=self.status)
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    @property
    def spans(self) -> list[Span]:
        """Every span of every POST answered 200, in the order received."""
        return [span for post in self.posts if self.status == 200 for span in spans_of(post.request)]

    async def wait_for_spans(self, count: int, within: float = 10.0) -> list[Span]:
        """The spans once at least ``count`` have arrived (TimeoutError after ``within`` seconds)."""
        await self._until(lambda: len(self.spans) >= count, within)
        return self.spans

    async def wait_for_posts(self, count: int, within: float = 10.0) -> list[Post]:
        """The POSTs once at least ``count`` have arrived (TimeoutError after ``within`` seconds)."""
        await self._until(lambda: len(self.posts) >= count, within)
        return self.posts

    async def _until(self, done: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not done():
                self._arrived.clear()
                await self._arrived.wait()


def spans_of(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def attributes(message: Any) -> dict[str, Any]:
    """A span's or a resource's attributes as a dict of plain values."""
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in message.attributes}


def hung_collector() -> socket.socket:
    """A socket that listens and never reads nor answers: connections complete (the kernel accepts them
    into the backlog) and every request waits. Close it after the test."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(64)
    return listener


def tree(spans: list[Span]) -> str:
    """The spans as an indented tree with durations, children in start order (for reports and failures)."""
    ids = {span.span_id for span in spans}
    children: dict[bytes, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)
    lines: list[str] = []

    def walk(span: Span, depth: int) -> None:
        took = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
        parent = span.parent_span_id.hex() or "-"
        lines.append(f"{'  ' * depth}{span.name}  {took:.3f} ms  span {span.span_id.hex()} parent {parent}")
        for child in sorted(children.get(span.span_id, []), key=lambda c: c.start_time_unix_nano):
            walk(child, depth + 1)

    for span in spans:
        if span.parent_span_id not in ids:
            walk(span, 0)
    return "\n".join(lines)
