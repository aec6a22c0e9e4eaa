"""The one middleware: request ids, metrics, and every error rendered as a small JSON body."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from function.api.responses import error_response
from function.errors import InvalidInput, ServiceError
from function.metrics import REJECTION_REASONS
from function.state import ACCESS_LOG, METRICS, REQUEST_IDS, SETTINGS

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"


class RequestIds:
    """Fresh request ids: 32 hex digits, a random half drawn once per app and a counting half.

    Unique across processes and restarts (the random half) and cheap: no system call per request,
    which ``os.urandom`` for every id costs (about 5% of the event loop's time under load).
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def __call__(self, request: web.Request) -> str:
        """The caller's X-Request-ID when it is sane, else a fresh one."""
        given = request.headers.get("X-Request-ID")
        if given is not None and _SAFE_ID.fullmatch(given):
            return given
        return f"{self._prefix}{next(self._count):016x}"


def route_template(request: web.Request) -> str:
    """The route's template (never the raw path, whose values are unbounded)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def _http_error(exc: web.HTTPException) -> web.Response:
    code = re.sub(r"\W+", "_", exc.reason.lower()).strip("_")
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return error_response(exc.status, code, exc.reason, headers)


def _service_error(request: web.Request, exc: ServiceError, rid: str) -> web.Response:
    headers = {"Retry-After": str(request.app[SETTINGS].retry_after_seconds)} if exc.retry else None
    response = error_response(exc.status, exc.error, exc.detail, headers)
    if exc.close:
        response.force_close()
    metrics = request.app[METRICS]
    if isinstance(exc, InvalidInput):
        metrics.validation_failures.labels(exc.reason).inc()
    elif exc.error in REJECTION_REASONS:
        metrics.rejections.labels(exc.error).inc()
    if exc.status >= 500:
        log.warning("%s: %s", exc.error, exc.detail, extra={"fields": {"request_id": rid}})
    return response


def _abandoned(request: web.Request, rid: str, elapsed: float) -> None:
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
        access_log.write(request, status, elapsed, rid)


@web.middleware
async def service_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    rid = request.app[REQUEST_IDS](request)
    started = time.perf_counter()
    metrics.in_flight.inc()
    try:
        response = await handler(request)
    except ServiceError as exc:
        response = _service_error(request, exc, rid)
    except web.HTTPException as exc:
        response = _http_error(exc)
    except asyncio.CancelledError:
        _abandoned(request, rid, time.perf_counter() - started)
        raise
    except Exception:
        log.exception("unhandled error", extra={"fields": {"request_id": rid}})
        response = error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
    finally:
        metrics.in_flight.dec()
    response.headers["X-Request-ID"] = rid
    metrics.observe_request(route_template(request), request.method, response.status, time.perf_counter() - started)
    return response
