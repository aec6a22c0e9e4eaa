"""The app factory: everything the service is made of, built from ``Settings`` alone."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from function.classifier import Classifier, PoolClassifier
from function.heap import QUIET_SECONDS, IdleTrim
from function.metrics import Metrics
from function.middleware import UNMATCHED, service_middleware
from function.model_info import load_model_info, verify_model_file
from function.openapi import add_docs, openapi_document
from function.routes import ROUTES
from function.settings import Settings
from function.state import CLASSIFIER, LIFECYCLE, METRICS, MODEL_INFO, OPENAPI, SETTINGS, Lifecycle

log = logging.getLogger(__name__)


def create_app(settings: Settings, classifier: Classifier | None = None) -> web.Application:
    """Build the application; the model starts in a cleanup context when the app starts.

    ``classifier`` replaces the onnxruntime pool (the benchmark's HTTP-only ceiling uses a
    constant one); by default the pool serves ``settings.model_dir``.
    """
    info = load_model_info(settings.metadata_path)
    metrics = Metrics(info["labels"], [path for _, path, _ in ROUTES] + [UNMATCHED])
    metrics.model.info({"name": info["name"], "version": info["version"], "sha256": info["sha256"]})
    if classifier is None:
        classifier = PoolClassifier(
            settings.model_path,
            info["labels"],
            settings.worker_count,
            max_batch=settings.batch_max_size,
            max_pending=settings.max_pending,
            retry_after=settings.retry_after_seconds,
            start_timeout=settings.worker_start_timeout_seconds,
            metrics=metrics,
        )

    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[service_middleware])
    app[SETTINGS] = settings
    app[MODEL_INFO] = info
    app[METRICS] = metrics
    app[CLASSIFIER] = classifier
    app[LIFECYCLE] = Lifecycle()
    app[OPENAPI] = openapi_document()
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # HEAD too, as RFC 9110 asks
        else:
            app.router.add_route(method, path, handler)
    add_docs(app)
    app.cleanup_ctx.append(_classifier_context)
    app.cleanup_ctx.append(_garbage_collector_context)
    app.cleanup_ctx.append(_heap_trim_context)
    app.on_shutdown.append(_start_draining)
    return app


async def _classifier_context(app: web.Application) -> AsyncIterator[None]:
    """Check the model file, start and warm the classifier, and stop it last on shutdown."""
    settings, classifier = app[SETTINGS], app[CLASSIFIER]
    if isinstance(classifier, PoolClassifier):
        verify_model_file(settings.model_path, app[MODEL_INFO])
    await classifier.start()
    log.info("serving model %s %s on port %d", app[MODEL_INFO]["name"], app[MODEL_INFO]["version"], settings.port)
    yield
    await classifier.stop()
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
    lifecycle, idle = app[LIFECYCLE], IdleTrim()

    async def watch() -> None:
        while True:
            await asyncio.sleep(QUIET_SECONDS / 2)
            idle.observe(lifecycle.requests)

    task = asyncio.create_task(watch(), name="heap-trim")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _start_draining(app: web.Application) -> None:
    app[LIFECYCLE].draining = True
    log.info("draining: readiness now answers 503")
