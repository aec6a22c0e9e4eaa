"""Typed application state: every key the handlers and hooks share."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from function.inference.classifier import Classifier
from function.metrics import Metrics
from function.settings import Settings

if TYPE_CHECKING:
    from function.api.access_log import AccessLogger
    from function.api.body import BodyBudget
    from function.api.middleware import RequestIds


class Lifecycle:
    """Whether the service is draining (readiness turns 503), by when it must have stopped, and
    the requests whose bodies are still arriving (the drain cancels them, to answer 503 at once)."""

    def __init__(self) -> None:
        self.draining = False
        self.deadline: float | None = None  # loop.time() by which shutdown must be over
        self.uploads: set[asyncio.Task[Any]] = set()  # handlers waiting for their body


SETTINGS = web.AppKey("settings", Settings)
CLASSIFIER: web.AppKey[Classifier] = web.AppKey("classifier")
METRICS = web.AppKey("metrics", Metrics)
MODEL_INFO = web.AppKey("model_info", dict[str, Any])
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
OPENAPI = web.AppKey("openapi", dict[str, bytes])  # URL path -> committed document
BODIES: web.AppKey[BodyBudget] = web.AppKey("bodies")
ACCESS_LOG: web.AppKey[AccessLogger | None] = web.AppKey("access_log")
REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids")
#: ``time.perf_counter()`` when the middleware took the request (the access log's duration:
#: aiohttp's own comes from ``loop.time()``, whole milliseconds under uvloop).
STARTED = web.RequestKey("started", float)
