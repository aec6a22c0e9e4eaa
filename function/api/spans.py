"""Spans, when tracing is on: the tracer made, started and stopped with the app, and each finished
request's server span with the phases its timings show."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from function.api.paths import SERVICE_NAME
from function.api.state import TIMINGS, TRACER
from function.collectors import TraceSpans
from function.metrics import PREFIX, Metrics
from function.state import MODEL_INFO, SETTINGS

if TYPE_CHECKING:  # imported only when tracing is on (add_tracer)
    from function.tracing.config import TracingConfig
    from function.tracing.otlp import Phase
    from function.tracing.tracer import Tracer

log = logging.getLogger(__name__)
#: What the export thread gets on shutdown for the spans still queued, however slow the collector.
SHUTDOWN_SECONDS = 2.0


def add_tracer(app: web.Application, config: TracingConfig, metrics: Metrics) -> Tracer:
    """The tracer, its span counts in /metrics, and its export thread started and stopped with ``app``.

    The spans' resource names the app's model and revision where the ``OTEL_*`` variables say nothing
    else. Call it after ``MODEL_INFO`` and ``SETTINGS`` are set and before the app's other cleanup
    contexts are added: its cleanup then runs last, once every request has ended (after the drain).
    """
    from function.tracing.tracer import Tracer  # only with tracing on

    resource = _resource(app[MODEL_INFO], app[SETTINGS].revision)
    tracer = Tracer(config.with_resource(resource))
    metrics.registry.register(TraceSpans(PREFIX, tracer.counts))
    app.cleanup_ctx.append(_tracer_context)
    return tracer


def _resource(info: dict[str, Any], revision: str) -> dict[str, str]:
    """The service's name, its model's version and name (``model.json``) and, under Knative, the revision."""
    resource = {"service.name": SERVICE_NAME, "service.version": info["version"], "textclf.model.name": info["name"]}
    if revision:
        resource["knative.revision"] = revision
    return resource


async def _tracer_context(app: web.Application) -> AsyncIterator[None]:
    """Export while the app runs; on cleanup, send what is queued (within ``SHUTDOWN_SECONDS``, off the loop)."""
    tracer = app[TRACER]
    assert tracer is not None
    tracer.start()
    log.info("traces: each request's spans go to %s", tracer.where, extra={"fields": {"traces": tracer.where}})
    yield
    await asyncio.to_thread(tracer.shutdown, SHUTDOWN_SECONDS)
    counts = tracer.counts()
    log.info(
        "traces: %d spans exported, %d dropped with the queue full, %d dropped as the export failed",
        *counts,
    )


def record_span(
    tracer: Tracer,
    request: web.Request,
    traceparent: str,
    parent_id: str | None,
    status: int,
    started: float,
    ended: float,
) -> None:
    """Queue the request's spans (the event loop's side: no system call).

    ``traceparent``: the answer's, as ``RequestIds`` wrote it (with tracing on every answer has one), for
    which ``Tracer.keeps`` was true; ``parent_id``: the caller's span id, None when this request started
    the trace. A phase the request
    never reached is left out; one it did not finish (its client left, an error) ends with the request.
    """
    timings = request[TIMINGS]
    phases: list[Phase] = []
    if timings.read_from:
        phases.append(("read body", timings.read_from, timings.read_to or ended))
    if timings.queued:
        phases.append(("queue wait", timings.queued, timings.started or ended))
        if timings.started:
            phases.append(("inference", timings.started, timings.inferred))
    if timings.answered:
        phases.append(("encode", timings.answered, ended))
    resource = request.match_info.route.resource
    tracer.record(
        trace_id=traceparent[3:35],
        parent_id=parent_id,
        span_id=traceparent[36:52],
        method=request.method,
        route=None if resource is None else resource.canonical,
        path=request.path,
        status=status,
        started=started,
        ended=ended,
        phases=tuple(phases),
        attributes=(("textclf.texts", timings.texts),) if timings.texts else (),
    )
