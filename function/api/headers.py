"""What every answer's headers say: its request id, its place in the caller's trace, and who answered."""

from __future__ import annotations

import itertools
import os
import re

from aiohttp import web

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# W3C Trace Context: version 00 is exactly this; a later version may append "-" and more fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
TRACEPARENT = "traceparent"
#: Which model and revision answered: a header of every answer -> a field of every access line.
SERVED_HEADERS = {"X-Model-Name": "model", "X-Model-Version": "model_version", "X-Revision": "revision"}


def served_by(name: str, version: str, revision: str) -> dict[str, str]:
    """The headers naming the model and the Knative revision (left out outside Knative)."""
    values = dict(zip(SERVED_HEADERS, (name, version, revision), strict=True))
    return {header: value for header, value in values.items() if value}


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id inside a ``traceparent`` that ``RequestIds`` wrote (the access log's ``trace_id``)."""
    return None if traceparent is None else traceparent[3:35]


class RequestIds:
    """Fresh request ids and span ids, a random part drawn once per app and a counting part.

    Unique across processes and restarts (the random part) and cheap: no system call per request,
    which ``os.urandom`` for every id costs (about 5% of the event loop's time under load).
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._span_prefix = os.urandom(4).hex()
        self._count = itertools.count(1)

    def __call__(self, request: web.Request) -> tuple[str, str | None]:
        """The request id (the caller's X-Request-ID when it is sane) and the answer's traceparent.

        With a valid W3C ``traceparent``, this request becomes a span of the caller's trace: the
        answer's ``traceparent`` keeps its trace id and flags with this span's id, and a request id
        not given is ``<trace id>-<span id>``.
        """
        given = request.headers.get("X-Request-ID")
        safe = given if given is not None and _SAFE_ID.fullmatch(given) else None
        trace = _trace(request.headers.get(TRACEPARENT))
        if trace is None:
            return safe or f"{self._prefix}{next(self._count):016x}", None
        trace_id, flags = trace
        span = f"{self._span_prefix}{next(self._count) & 0xFFFFFFFF:08x}"
        return safe or f"{trace_id}-{span}", f"00-{trace_id}-{span}-{flags}"


def _trace(header: str | None) -> tuple[str, str] | None:
    """(trace id, flags) of a valid ``traceparent``; None when absent or invalid (it is then ignored)."""
    if header is None:
        return None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None
    version, trace_id, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return trace_id, flags
