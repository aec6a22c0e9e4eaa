"""The one middleware: request ids, trace context, metrics, and every error rendered as a small JSON body."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from function.api.responses import error_response, json_response
from function.api.routes import V2_PREFIX
from function.errors import FeedbackError, InvalidInput, ServiceError
from function.metrics import REJECTION_REASONS
from function.state import ACCESS_LOG, LIFECYCLE, METRICS, REQUEST_IDS, SERVED_BY, SETTINGS, STARTED

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# W3C Trace Context: version 00 is exactly this; a later version may append "-" and more fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
UNMATCHED = "unmatched"
TRACEPARENT = "traceparent"
#: Which model and revision answered: a header of every answer -> a field of every access line.
SERVED_HEADERS = {"X-Model-Name": "model", "X-Model-Version": "model_version", "X-Revision": "revision"}


def served_by(name: str, version: str, revision: str) -> dict[str, str]:
    """The headers naming the model and the Knative revision (left out outside Knative)."""
    values = dict(zip(SERVED_HEADERS, (name, version, revision), strict=True))
    return {header: value for header, value in values.items() if value}


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id inside a ``traceparent`` this middleware wrote (the access log's ``trace_id``)."""
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


def route_template(request: web.Request) -> str:
    """The route's template (never the raw path, whose values are unbounded)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def _answer(v2: bool, status: int, code: str, detail: str, headers: dict[str, str] | None) -> web.Response:
    """An error in the shape of the request's protocol: ``{"error", "detail"}``, or on the Open
    Inference Protocol's routes (``v2``) its ``{"error": <detail>}``."""
    if v2:
        return json_response({"error": detail}, status, headers)
    return error_response(status, code, detail, headers)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    code = re.sub(r"\W+", "_", exc.reason.lower()).strip("_")
    v2 = request.path.startswith(V2_PREFIX)
    return _answer(v2, exc.status, code, _what_next(request, exc, headers.get("Allow", "")), headers)


def _what_next(request: web.Request, exc: web.HTTPException, allowed: str) -> str:
    """The routing error's reason, with what to do instead."""
    if exc.status == 404:
        return f"{exc.reason}: no route {request.path}; the API is described at /docs"
    if exc.status == 405 and "POST" in allowed:
        return f"{exc.reason}: {request.path} takes POST with a JSON body (Content-Type: application/json)"
    if exc.status == 405:
        return f"{exc.reason}: {request.path} takes {allowed}"
    return exc.reason


def _service_error(request: web.Request, exc: ServiceError, rid: str) -> web.Response:
    headers = {"Retry-After": str(request.app[SETTINGS].retry_after_seconds)} if exc.retry else None
    v2 = request.path.startswith(V2_PREFIX)
    # NOTE: an invalid request is 405 by the challenge's contract, 400 by the Open Inference Protocol's.
    status = 400 if v2 and isinstance(exc, InvalidInput) else exc.status
    response = _answer(v2, status, exc.error, exc.detail, headers)
    if exc.close:
        response.force_close()
    metrics = request.app[METRICS]
    if isinstance(exc, InvalidInput):
        metrics.validation_failures.labels(exc.reason).inc()
    elif isinstance(exc, FeedbackError):
        metrics.feedback_rejected.labels(exc.error).inc()
    elif exc.error in REJECTION_REASONS:
        metrics.rejections.labels(exc.error).inc()
    if exc.status >= 500:
        log.warning("%s: %s", exc.error, exc.detail, extra={"fields": {"request_id": rid}})
    return response


def _abandoned(request: web.Request, rid: str, traceparent: str | None, elapsed: float) -> None:
    """A request whose handler was cancelled: 499 when its client went away (aiohttp then cancels
    the handler, and with it the texts it queued), 503 when the drain gave up on it."""
    transport = request.transport
    status = 499 if transport is None or transport.is_closing() else 503
    metrics = request.app[METRICS]
    if status == 499:
        metrics.rejections.labels("client_closed_request").inc()
    metrics.observe_request(route_template(request), request.method, status, elapsed)
    access_log = request.app[ACCESS_LOG]
    if access_log is not None:
        served: dict[str, str] = request.app[SERVED_BY]
        access_log.write(request, status, elapsed, rid, trace_id_of(traceparent), served)


@web.middleware
async def service_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    metrics, lifecycle = app[METRICS], app[LIFECYCLE]
    rid, traceparent = app[REQUEST_IDS](request)
    request[STARTED] = started = time.perf_counter()
    lifecycle.active += 1
    try:
        response = await handler(request)
    except ServiceError as exc:
        response = _service_error(request, exc, rid)
    except web.HTTPException as exc:
        response = _http_error(request, exc)
    except asyncio.CancelledError:
        _abandoned(request, rid, traceparent, time.perf_counter() - started)
        raise
    except Exception:
        log.exception("unhandled error", extra={"fields": {"request_id": rid}})
        response = error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
    finally:
        lifecycle.active -= 1
    headers = response.headers
    headers["X-Request-ID"] = rid
    headers.update(app[SERVED_BY])
    if traceparent is not None:
        headers[TRACEPARENT] = traceparent
    if lifecycle.draining:  # each connection's last answer: the client must go elsewhere
        response.force_close()
    metrics.observe_request(route_template(request), request.method, response.status, time.perf_counter() - started)
    return response
