"""The one middleware: request ids, trace context, metrics, and every error rendered as a small JSON body."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from function.api.access_log import STARTED
from function.api.headers import TRACEPARENT, trace_id_of
from function.api.paths import V2_PREFIX
from function.api.responses import error_response, json_response
from function.api.spans import record_span
from function.api.state import ACCESS_LOG, REQUEST_IDS, SERVED_BY, TIMINGS, TRACER
from function.cloudevents.event_types import EVENTS_PATH, EVENTS_ROUTE
from function.errors import ClientDisconnected, FeedbackError, InvalidInput, Rejected, ServiceError
from function.inference.classifier import Timings
from function.state import LIFECYCLE, METRICS, SETTINGS

if TYPE_CHECKING:  # imported only when tracing is on (function.api.spans.add_tracer)
    from function.tracing.tracer import Tracer

log = logging.getLogger(__name__)
UNMATCHED = "unmatched"


def route_template(request: web.Request) -> str:
    """The route's template (never the raw path, whose values are unbounded), as the metrics name it."""
    resource = request.match_info.route.resource
    return metrics_route(request.method, resource.canonical) if resource is not None else UNMATCHED


def metrics_route(method: str, template: str) -> str:
    """The ``route`` label: the template, but for the events ``POST /`` (``GET /`` is the index)."""
    return EVENTS_ROUTE if template == EVENTS_PATH and method == "POST" else template


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
    # NOTE: an invalid request is 405 by the challenge's contract, 400 by the Open Inference Protocol's
    # and for events (Knative retries no 400, and a 405 would say the method is wrong).
    status = 400 if isinstance(exc, InvalidInput) and (v2 or route_template(request) == EVENTS_ROUTE) else exc.status
    response = _answer(v2, status, exc.error, exc.detail, headers)
    if exc.close:
        response.force_close()
    metrics = request.app[METRICS]
    if isinstance(exc, InvalidInput):
        metrics.validation_failures.labels(exc.reason).inc()
    elif isinstance(exc, FeedbackError):
        metrics.feedback_rejected.labels(exc.error).inc()
    elif isinstance(exc, Rejected):
        metrics.rejections.labels(exc.error).inc()
    if exc.status >= 500:
        log.warning("%s: %s", exc.error, exc.detail, extra={"fields": {"request_id": rid}})
    return response


def _abandoned(request: web.Request, rid: str, traceparent: str | None, parent_id: str | None, elapsed: float) -> None:
    """A request whose handler was cancelled: 499 when its client went away (aiohttp then cancels
    the handler, and with it the texts it queued), 503 when the drain gave up on it."""
    transport = request.transport
    status = 499 if transport is None or transport.is_closing() else 503
    metrics = request.app[METRICS]
    if status == 499:
        metrics.rejections.labels(ClientDisconnected.error).inc()
    metrics.observe_request(route_template(request), request.method, status, elapsed)
    access_log = request.app[ACCESS_LOG]
    if access_log is not None:
        served: dict[str, str] = request.app[SERVED_BY]
        access_log.write(request, status, elapsed, rid, trace_id_of(traceparent), served)
    tracer = request.app[TRACER]
    if tracer is not None and traceparent is not None and TIMINGS in request:  # its spans are kept
        started = request[STARTED]
        record_span(tracer, request, traceparent, parent_id, status, started, started + elapsed)


def _keeping(tracer: Tracer | None, traceparent: str | None) -> Tracer | None:
    """The tracer, if it keeps this request's spans (decided as it starts: one sampled out takes no timings)."""
    if tracer is None or traceparent is None or not tracer.keeps(traceparent):
        return None
    return tracer


@web.middleware
async def service_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    metrics, lifecycle = app[METRICS], app[LIFECYCLE]
    rid, traceparent, parent_id = app[REQUEST_IDS](request)
    request[STARTED] = started = time.perf_counter()
    tracer = _keeping(app[TRACER], traceparent)
    if tracer is not None:
        request[TIMINGS] = Timings()
    lifecycle.active += 1
    try:
        response = await handler(request)
    except ServiceError as exc:
        response = _service_error(request, exc, rid)
    except web.HTTPException as exc:
        response = _http_error(request, exc)
    except asyncio.CancelledError:
        _abandoned(request, rid, traceparent, parent_id, time.perf_counter() - started)
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
    ended = time.perf_counter()
    if tracer is not None and traceparent is not None:
        record_span(tracer, request, traceparent, parent_id, response.status, started, ended)
    metrics.observe_request(route_template(request), request.method, response.status, ended - started)
    return response
