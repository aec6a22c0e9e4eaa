"""Typed application state: the service's keys that the handlers and hooks share.

The HTTP layer's own keys (body budget, access log, request ids, documents) are in ``function.api.state``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from function.feedback import PredictionIds
from function.inference.classifier import Classifier
from function.metrics import Metrics
from function.settings import Settings


class Lifecycle:
    """Whether the service is draining (readiness turns 503, every answer closes its connection),
    whether the drain has reached its cut (nothing more is read), by when it must have stopped,
    the requests being handled, and those whose bodies are still arriving (the cut answers them 503)."""

    def __init__(self) -> None:
        self.draining = False
        self.cut = False
        self.deadline: float | None = None  # loop.time() by which shutdown must be over
        self.active = 0  # requests in the middleware now
        self.uploads: set[asyncio.Task[Any]] = set()  # handlers waiting for their body

    def cut_uploads(self) -> int:
        """The drain's cut: nothing more is read, and requests still waiting for their body are
        cancelled, to be answered 503 (``function.api.body``); how many there were."""
        self.draining = self.cut = True
        for task in self.uploads:
            task.cancel()
        return len(self.uploads)


SETTINGS = web.AppKey("settings", Settings)
CLASSIFIER: web.AppKey[Classifier] = web.AppKey("classifier")
METRICS = web.AppKey("metrics", Metrics)
MODEL_INFO = web.AppKey("model_info", dict[str, Any])
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
#: Issues and checks prediction ids; None without FEEDBACK_KEY (no ids, no feedback).
PREDICTION_IDS: web.AppKey[PredictionIds | None] = web.AppKey("prediction_ids")
