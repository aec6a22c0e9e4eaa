"""The app factory: everything the service is made of, built from ``Settings`` alone."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from function.api.access_log import ACCESS_LOGGER, AccessLogger
from function.api.body import defer_continue
from function.api.docs import add_docs
from function.api.documents import committed_documents
from function.api.headers import RequestIds, served_by
from function.api.middleware import UNMATCHED, metrics_route, service_middleware
from function.api.paths import OPENAPI_PATH
from function.api.routes import ROUTES
from function.api.spans import add_tracer
from function.api.state import ACCESS_LOG, BODIES, EVENT_REPLIES, OPENAPI, REQUEST_IDS, SERVED_BY, TRACER, BodyBudget
from function.batching.adaptive import AdaptiveBatcher
from function.cloudevents.redelivery import RecentReplies
from function.errors import StartupError
from function.feedback import PredictionIds
from function.heap import QUIET_SECONDS, IdleTrim
from function.inference.classifier import Classifier
from function.inference.messages import WorkerConfig
from function.metrics import Metrics
from function.model_info import load_model_info, read_verified_model
from function.parallel.dispatcher import Dispatcher
from function.parallel.pool import WorkerPool
from function.settings import Settings
from function.state import CLASSIFIER, LIFECYCLE, METRICS, MODEL_INFO, PREDICTION_IDS, SETTINGS, Lifecycle

if TYPE_CHECKING:
    from function.tracing.config import TracingConfig

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, classifier: Classifier | None = None, tracing: TracingConfig | None = None
) -> web.Application:
    """Build the application; the classifier starts in a cleanup context when the app starts.

    ``classifier`` replaces the onnxruntime pool (the benchmark's HTTP-only ceiling uses a
    constant one); by default the pool serves the model in ``settings.model_dir``, whose bytes
    are read and checked against ``model.json`` here, once. ``tracing``: where each request's
    spans go (``function.command_line.parse_startup``); None: tracing off, nothing of it runs.
    """
    info = load_model_info(settings.metadata_path)
    budgets = settings.budgets()
    routes = [*(metrics_route(method, path) for method, path, _ in ROUTES), UNMATCHED]
    metrics = Metrics(info["labels"], routes, info.get("training_data", {}).get("label_counts"))
    metrics.model.info({"name": info["name"], "version": info["version"], "sha256": info["sha256"]})
    if classifier is None:
        model = read_verified_model(settings.model_path, info)
        classifier = pool_classifier(model, info["labels"], settings, budgets.batch_chars, metrics)

    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[service_middleware])
    app[SETTINGS] = settings
    app[MODEL_INFO] = info
    app[METRICS] = metrics
    app[CLASSIFIER] = classifier
    app[LIFECYCLE] = lifecycle = Lifecycle()
    metrics.in_flight.set_function(lambda: lifecycle.active)
    app[OPENAPI] = committed_documents()
    app[BODIES] = bodies = BodyBudget(budgets.body_bytes)
    metrics.body_bytes_held.set_function(lambda: bodies.held)
    metrics.body_budget.set(bodies.limit)
    app[TRACER] = tracer = None if tracing is None else add_tracer(app, tracing, metrics)
    app[REQUEST_IDS] = RequestIds(None if tracer is None else tracer.samples_root)
    app[SERVED_BY] = served_by(info["name"], info["version"], settings.revision)
    app[PREDICTION_IDS] = prediction_ids(settings, info, metrics)
    app[EVENT_REPLIES] = RecentReplies(settings.event_replies, settings.event_replies_bytes)
    app[ACCESS_LOG] = AccessLogger(logging.getLogger(ACCESS_LOGGER), "") if settings.access_log else None
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # HEAD too, as RFC 9110 asks
        else:
            app.router.add_route(method, path, handler, expect_handler=defer_continue)
    add_docs(app, OPENAPI_PATH)
    app.cleanup_ctx.append(_classifier_context)
    app.cleanup_ctx.append(_garbage_collector_context)
    app.cleanup_ctx.append(_heap_trim_context)
    app.on_shutdown.append(_start_draining)
    return app


def prediction_ids(settings: Settings, info: dict[str, Any], metrics: Metrics) -> PredictionIds | None:
    """The issuer and checker of prediction ids, with this version's feedback series at 0; None without a key."""
    if not settings.feedback_key:
        return None
    try:
        ids = PredictionIds(
            settings.feedback_key,
            info["version"],
            info["labels"],
            settings.feedback_max_age_seconds,
            settings.feedback_seen_ids,
        )
    except ValueError as exc:
        raise StartupError(f"prediction ids cannot name this model: {exc}") from None
    for predicted in ids.labels:
        for actual in ids.labels:
            metrics.feedback.labels(info["version"], predicted, actual)
    return ids


def pool_classifier(
    model: bytes, labels: Sequence[str], settings: Settings, batch_max_chars: int, metrics: Metrics
) -> AdaptiveBatcher:
    """onnxruntime in ``settings.worker_count`` processes, fed by an adaptive batcher that bounds the queue."""
    pool = WorkerPool(
        settings.worker_count,
        WorkerConfig(model, settings.log_format, settings.log_level),
        start_timeout=settings.worker_start_timeout_seconds,
        inference_timeout=settings.inference_timeout_seconds,
        on_restart=metrics.worker_restarts.inc,
    )
    metrics.workers_configured.set(pool.size)
    metrics.batch_chars.set(batch_max_chars)
    metrics.workers_alive.set_function(lambda: pool.alive)
    return AdaptiveBatcher(
        Dispatcher(pool),
        labels,
        short_text_workers=settings.short_text_worker_count,
        batch_max_size=settings.batch_max_size,
        batch_max_chars=batch_max_chars,
        max_pending=settings.max_pending,
        metrics=metrics,
    )


async def _classifier_context(app: web.Application) -> AsyncIterator[None]:
    """Start and warm the classifier; stop it last on shutdown."""
    settings, classifier, info = app[SETTINGS], app[CLASSIFIER], app[MODEL_INFO]
    await classifier.start()
    url = f"http://{'localhost' if settings.host in ('0.0.0.0', '::', '') else settings.host}:{settings.port}"
    revision = f" as revision {settings.revision}" if settings.revision else ""
    revision_field = {"revision": settings.revision} if settings.revision else {}
    feedback = "on" if app[PREDICTION_IDS] is not None else "off (no FEEDBACK_KEY)"
    log.info(
        "serving model %s %s%s at %s (API docs: %s/docs; feedback %s)",
        info["name"],
        info["version"],
        revision,
        url,
        url,
        feedback,
        extra={"fields": {"model": info["name"], "model_version": info["version"]} | revision_field},
    )
    yield
    deadline = app[LIFECYCLE].deadline
    left = settings.shutdown_grace_seconds if deadline is None else deadline - asyncio.get_running_loop().time()
    await classifier.stop(max(left, 0.2))
    log.info("classifier stopped")


async def _garbage_collector_context(app: web.Application) -> AsyncIterator[None]:
    """Time every collection, and keep what startup built out of the collector's way.

    Startup leaves some 50,000 long-lived objects (aiohttp, apispec, prometheus_client...);
    without the freeze, each full collection under load walks them all and stops the event
    loop for 40-50 ms, which every request in flight then waits for.
    """
    pauses = app[METRICS].gc_pauses
    gc.callbacks.append(pauses)
    gc.freeze()
    yield
    gc.unfreeze()
    gc.callbacks.remove(pauses)


async def _heap_trim_context(app: web.Application) -> AsyncIterator[None]:
    """Give the heap a burst of requests grew back to the OS once the burst is over."""
    metrics, idle = app[METRICS], IdleTrim()

    async def watch() -> None:
        while True:
            await asyncio.sleep(QUIET_SECONDS / 2)
            idle.observe(metrics.activity.ticks)

    task = asyncio.create_task(watch(), name="heap-trim")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _start_draining(app: web.Application) -> None:
    """The app stops: requests still waiting for their body are answered 503 at once.

    (``python -m function`` drains before, in ``function.serving.drain``; this is for the
    runners of embedding apps and tests, which stop at once.)
    """
    if cut := app[LIFECYCLE].cut_uploads():
        log.info("%d requests still uploading are answered 503", cut)
