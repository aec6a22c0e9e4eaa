"""What every answer's headers say: its request id, its place in the caller's trace, and who answered."""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import Callable

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
    """Fresh request ids, span ids and trace ids, a random part drawn once per app and a counting part.

    Unique across processes and restarts (the random part) and cheap: no system call per request,
    which ``os.urandom`` for every id costs (about 5% of the event loop's time under load).
    ``sampled_root``: with tracing on, whether a trace this service starts is sampled, by its trace id
    (``Tracer.samples_root``); None with tracing off.
    """

    def __init__(self, sampled_root: Callable[[str], bool] | None = None) -> None:
        self._prefix = os.urandom(8).hex()
        self._span_prefix = os.urandom(4).hex()
        self._count = itertools.count(1)
        self._sampled_root = sampled_root
        # A trace id's right 7 bytes are random (W3C Trace Context level 2, what ratio samplers read):
        # drawn from a generator seeded once, not from the kernel.
        self._random_bits = random.Random(os.urandom(16)).getrandbits

    def __call__(self, request: web.Request) -> tuple[str, str | None, str | None]:
        """The request id (the caller's X-Request-ID when it is sane), the answer's traceparent, and the
        caller's span id (this request's span's parent).

        With a valid W3C ``traceparent``, this request becomes a span of the caller's trace: the
        answer's ``traceparent`` keeps its trace id and flags with this span's id, and a request id
        not given is ``<trace id>-<span id>``. Without one, and with tracing on, it starts a trace of
        its own, answered likewise; with tracing off, it is in no trace.
        """
        given = request.headers.get("X-Request-ID")
        safe = given if given is not None and _SAFE_ID.fullmatch(given) else None
        trace = _trace(request.headers.get(TRACEPARENT))
        if trace is None:
            if self._sampled_root is None:
                return safe or f"{self._prefix}{next(self._count):016x}", None, None
            trace_id = f"{self._prefix}{self._random_bits(64):016x}"
            trace = trace_id, None, "01" if self._sampled_root(trace_id) else "00"
        trace_id, parent, flags = trace
        span = f"{self._span_prefix}{next(self._count) & 0xFFFFFFFF:08x}"
        return safe or f"{trace_id}-{span}", f"00-{trace_id}-{span}-{flags}", parent


def _trace(header: str | None) -> tuple[str, str | None, str] | None:
    """(trace id, parent span id, flags) of a valid ``traceparent``; None when absent or invalid (it is
    then ignored)."""
    if header is None:
        return None
    match = _TRACEPARENT.fullmatch(header.strip())
    if match is None:
        return None
    version, trace_id, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    return trace_id, span, flags
