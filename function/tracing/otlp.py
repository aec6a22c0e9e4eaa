"""An OTLP ``ExportTraceServiceRequest`` written by hand in the protobuf wire format (export thread only).

Field numbers are opentelemetry-proto's (``trace/v1/trace.proto``, ``common/v1/common.proto``); the tests
decode the bytes with opentelemetry-proto itself. Each request becomes a SERVER span named after its route
(HTTP semantic conventions) and one INTERNAL child span per phase. Names and attributes repeat from request
to request, so their encoding is cached; new span ids come from a private ``random.Random``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

AttributeValue = str | bool | int | float
Attributes = tuple[tuple[str, AttributeValue], ...]
#: A request's phase: (name, start, end), both in seconds of ``time.monotonic()``.
Phase = tuple[str, float, float]
#: What the event loop queues for one request (``Tracer.record``'s arguments, in order, less ``sampled``).
Record = tuple[
    str | None, str | None, str | None, str, str | None, str, int, float, float, tuple[Phase, ...], Attributes
]
#: HTTP methods the semantic conventions name; any other is recorded as ``_OTHER``.
METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"))
_CACHE_LIMIT = 4096  # cached encodings (routes, statuses, names: few; extra attribute values: maybe many)
_TIMES = struct.Struct("<BQBQ").pack  # start_time_unix_nano = 7, end_time_unix_nano = 8: fixed64
_FLAGS = struct.Struct("<BBI").pack  # flags = 16: fixed32 (tag 0x85 0x01)
_SERVER, _INTERNAL = b"\x30\x02", b"\x30\x01"  # kind = 6: SPAN_KIND_SERVER, SPAN_KIND_INTERNAL
_ERROR = b"\x7a\x02\x18\x02"  # status = 15 { code = 3: STATUS_CODE_ERROR }
_SAMPLED, _HAS_IS_REMOTE, _IS_REMOTE = 0x01, 0x100, 0x200  # W3C trace flags, then SpanFlags
_T = TypeVar("_T")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a string, bytes or an embedded message); ``number`` < 16."""
    size = len(payload)
    if size < 0x80:
        return bytes((number << 3 | 2, size)) + payload
    return bytes((number << 3 | 2,)) + _varint(size) + payload


def _any_value(value: AttributeValue) -> bytes:
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int_value = 3 (two's complement)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)  # double_value = 4
    return _field(1, str(value).encode())  # string_value = 1


def key_value(key: str, value: AttributeValue, number: int = 9) -> bytes:
    """A ``KeyValue`` as field ``number`` (9: ``Span.attributes``; 1: ``Resource.attributes``)."""
    return _field(number, _field(1, key.encode()) + _field(2, _any_value(value)))


class Encoder:
    """Batches of records to ``ExportTraceServiceRequest`` bytes, for one resource and scope."""

    def __init__(self, resource: Iterable[tuple[str, str]], scope_version: str = "") -> None:
        self._resource = _field(1, b"".join(key_value(k, v, 1) for k, v in resource))  # ResourceSpans.resource
        self._scope = _field(1, _field(1, b"function") + _field(2, scope_version.encode()))  # ScopeSpans.scope
        self._cache: dict[object, bytes] = {}
        self._random = random.Random()

    def encode(self, records: Sequence[Record], offset_ns: int) -> bytes:
        """``offset_ns``: ``time.time_ns() - time.monotonic_ns()``, which turns the records' times to Unix time."""
        spans: list[bytes] = []
        new_ids = self._random.randbytes
        for trace_id, parent_id, span_id, method, route, path, status, started, ended, phases, extra in records:
            trace = b"\x0a\x10" + (bytes.fromhex(trace_id) if trace_id else new_ids(16))
            server_id = bytes.fromhex(span_id) if span_id else new_ids(8)
            attributes = [
                self._cached(("method", method), _method_attributes, method),
                key_value("url.path", path),
                self._cached(("route", route), _route_attribute, route),
                self._cached(("status", status), _status_attributes, status),
            ]
            attributes += [self._cached(("extra", *kv, type(kv[1])), _extra_attribute, kv) for kv in extra]
            flags = _SAMPLED | _HAS_IS_REMOTE | _IS_REMOTE if parent_id else _SAMPLED | _HAS_IS_REMOTE
            body = b"".join(
                (
                    trace,
                    b"\x12\x08" + server_id,
                    (b"\x22\x08" + bytes.fromhex(parent_id)) if parent_id else b"",
                    self._cached(("name", method, route), _span_name, (method, route)),
                    _SERVER,
                    _TIMES(0x39, int(started * 1e9) + offset_ns, 0x41, int(ended * 1e9) + offset_ns),
                    *attributes,
                    _ERROR if status >= 500 else b"",
                    _FLAGS(0x85, 0x01, flags),
                )
            )
            spans.append(_field(2, body))  # ScopeSpans.spans
            child_ids = new_ids(8 * len(phases))
            parent = b"\x22\x08" + server_id
            for i, (name, start, end) in enumerate(phases):
                body = b"".join(
                    (
                        trace,
                        b"\x12\x08" + child_ids[8 * i : 8 * i + 8],
                        parent,
                        self._cached(("phase", name), _phase_name, name),
                        _INTERNAL,
                        _TIMES(0x39, int(start * 1e9) + offset_ns, 0x41, int(end * 1e9) + offset_ns),
                        _FLAGS(0x85, 0x01, _SAMPLED | _HAS_IS_REMOTE),
                    )
                )
                spans.append(_field(2, body))
        scope_spans = _field(2, self._scope + b"".join(spans))  # ResourceSpans.scope_spans
        return _field(1, self._resource + scope_spans)  # ExportTraceServiceRequest.resource_spans

    def _cached(self, key: object, make: Callable[[_T], bytes], argument: _T) -> bytes:
        encoded = self._cache.get(key)
        if encoded is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            encoded = self._cache[key] = make(argument)
        return encoded


def _method_attributes(method: str) -> bytes:
    if method in METHODS:
        return key_value("http.request.method", method)
    return key_value("http.request.method", "_OTHER") + key_value("http.request.method_original", method)


def _route_attribute(route: str | None) -> bytes:
    return b"" if route is None else key_value("http.route", route)


def _status_attributes(status: int) -> bytes:
    encoded = key_value("http.response.status_code", status)
    return encoded + key_value("error.type", str(status)) if status >= 500 else encoded


def _extra_attribute(kv: tuple[str, AttributeValue]) -> bytes:
    return key_value(*kv)


def _span_name(method_route: tuple[str, str | None]) -> bytes:
    """``{method} {route}`` (semantic conventions): ``HTTP`` for a method not named, no route when unmatched."""
    method, route = method_route
    method = method if method in METHODS else "HTTP"
    return _field(5, (f"{method} {route}" if route else method).encode())


def _phase_name(name: str) -> bytes:
    return _field(5, name.encode())
