"""An OTLP ``ExportTraceServiceRequest`` written by hand in the protobuf wire format (export thread only).

Field numbers are opentelemetry-proto's (``trace/v1/trace.proto``, ``common/v1/common.proto``); the tests
decode the bytes with opentelemetry-proto itself. Each request becomes a SERVER span named after its route
(HTTP semantic conventions) and one INTERNAL child span per phase. Names and attributes repeat from request
to request, so their encoding is cached; new span ids come from a private ``random.Random``.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence
from typing import TypeVar

AttributeValue = str | bool | int | float
Attributes = tuple[tuple[str, AttributeValue], ...]
#: A request's phase: (name, start, end), both in seconds of ``time.monotonic()``.
Phase = tuple[str, float, float]
#: What the event loop queues for one request (``Tracer.record``'s arguments, in order).
Record = tuple[
    str | None, str | None, str | None, str, str | None, str, int, float, float, tuple[Phase, ...], Attributes
]
#: HTTP methods the semantic conventions name; any other is recorded as ``_OTHER``.
METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"))
_CACHE_LIMIT = 4096  # cached encodings (routes, statuses, names: few; extra attribute values: maybe many)
_TIMES = struct.Struct("<BQBQ").pack  # start_time_unix_nano = 7, end_time_unix_nano = 8: fixed64
_SERVER, _INTERNAL = b"\x30\x02", b"\x30\x01"  # kind = 6: SPAN_KIND_SERVER, SPAN_KIND_INTERNAL
_ERROR = b"\x7a\x02\x18\x02"  # status = 15 { code = 3: STATUS_CODE_ERROR }
# flags = 16 (fixed32, tag 0x85 0x01): sampled (W3C trace flags), SpanFlags HAS_IS_REMOTE, IS_REMOTE
_LOCAL_FLAGS, _REMOTE_FLAGS = b"\x85\x01" + struct.pack("<I", 0x101), b"\x85\x01" + struct.pack("<I", 0x301)
_K = TypeVar("_K")
_V = TypeVar("_V")


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
        self._heads: dict[tuple[str, str | None, int], bytes] = {}  # name, kind, method, route, status
        self._paths: dict[str, bytes] = {}
        self._phases: dict[str, tuple[bytes, bytes]] = {}  # a child span's frame, and its name, kind and flags
        self._extras: dict[tuple[str, type, AttributeValue], bytes] = {}
        self._random = random.Random()

    def encode(self, records: Sequence[Record], offset_ns: int) -> bytes:
        """``offset_ns``: ``time.time_ns() - time.monotonic_ns()``, which turns the records' times to Unix time."""
        return self.request([self.spans(records, offset_ns)])

    def request(self, spans: Iterable[bytes]) -> bytes:
        """The ``ExportTraceServiceRequest`` holding ``spans`` (what ``spans`` encoded, in parts)."""
        scope_spans = _field(2, self._scope + b"".join(spans))  # ResourceSpans.scope_spans
        return _field(1, self._resource + scope_spans)  # ExportTraceServiceRequest.resource_spans

    def spans(self, records: Sequence[Record], offset_ns: int) -> bytes:
        """The records' spans, each a ``ScopeSpans.spans`` field: parts of a ``request``."""
        spans: list[bytes] = []
        append, new_ids = spans.append, self._random.randbytes
        heads, paths, phase_names = self._heads, self._paths, self._phases
        for trace_id, parent_id, span_id, method, route, path, status, started, ended, phases, extra in records:
            trace = b"\x0a\x10" + (bytes.fromhex(trace_id) if trace_id else new_ids(16))
            server_id = b"\x12\x08" + (bytes.fromhex(span_id) if span_id else new_ids(8))
            head = heads.get((method, route, status)) or self._head(method, route, status)
            body = b"".join(
                (
                    trace,
                    server_id,
                    (b"\x22\x08" + bytes.fromhex(parent_id) + _REMOTE_FLAGS) if parent_id else _LOCAL_FLAGS,
                    _TIMES(0x39, int(started * 1e9) + offset_ns, 0x41, int(ended * 1e9) + offset_ns),
                    head,
                    paths.get(path) or self._path(path),
                    b"".join([self._extra(kv) for kv in extra]) if extra else b"",
                )
            )
            append(_frame(body))  # ScopeSpans.spans
            if not phases:
                continue
            ids = new_ids(8 * len(phases))
            ids_follow = trace + b"\x12\x08"  # trace_id, then span_id's tag
            parent = b"\x22\x08" + server_id[2:]
            for i, (name, start, end) in enumerate(phases):
                frame, named = phase_names.get(name) or self._phase(name)
                append(
                    b"".join(
                        (
                            frame,
                            ids_follow,
                            ids[8 * i : 8 * i + 8],
                            parent,
                            named,
                            _TIMES(0x39, int(start * 1e9) + offset_ns, 0x41, int(end * 1e9) + offset_ns),
                        )
                    )
                )
        return b"".join(spans)

    def _head(self, method: str, route: str | None, status: int) -> bytes:
        """What a server span's encoding shares with every other of its route, method and status."""
        named = method if method in METHODS else "HTTP"
        encoded = b"".join(
            (
                _field(5, (f"{named} {route}" if route else named).encode()),  # name
                _SERVER,
                _method_attributes(method),
                b"" if route is None else key_value("http.route", route),
                key_value("http.response.status_code", status),
                (key_value("error.type", str(status)) + _ERROR) if status >= 500 else b"",
            )
        )
        return _remember(self._heads, (method, route, status), encoded)

    def _path(self, path: str) -> bytes:
        return _remember(self._paths, path, key_value("url.path", path))

    def _phase(self, name: str) -> tuple[bytes, bytes]:
        """A child span's ``ScopeSpans.spans`` tag and length (its name fixes it), and its name, kind and flags."""
        named = _field(5, name.encode()) + _INTERNAL + _LOCAL_FLAGS
        frame = b"\x12" + _varint(20 + 8 + 10 + len(named) + 18)  # trace_id, span_id, parent_span_id, ..., times
        return _remember(self._phases, name, (frame, named))

    def _extra(self, kv: tuple[str, AttributeValue]) -> bytes:
        key = (kv[0], type(kv[1]), kv[1])  # 1 and True are equal keys, not equal encodings
        return self._extras.get(key) or _remember(self._extras, key, key_value(*kv))


def _remember(cache: dict[_K, _V], key: _K, encoded: _V) -> _V:
    if len(cache) >= _CACHE_LIMIT:  # unbounded values (paths of unmatched routes): start again
        cache.clear()
    cache[key] = encoded
    return encoded


def _frame(span: bytes) -> bytes:
    """A span as ``ScopeSpans.spans`` (field 2)."""
    size = len(span)
    return b"\x12" + (bytes((size,)) if size < 0x80 else _varint(size)) + span


def _method_attributes(method: str) -> bytes:
    if method in METHODS:
        return key_value("http.request.method", method)
    return key_value("http.request.method", "_OTHER") + key_value("http.request.method_original", method)
