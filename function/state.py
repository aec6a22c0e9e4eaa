"""Typed application state: every key the handlers and hooks share."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from function.classifier import Classifier
from function.metrics import Metrics
from function.settings import Settings


class Lifecycle:
    """Whether the service is draining (set on shutdown; readiness turns 503), and how busy it has been."""

    def __init__(self) -> None:
        self.draining = False
        self.requests = 0  # started so far: the heap trimmer's sign of activity


SETTINGS = web.AppKey("settings", Settings)
CLASSIFIER: web.AppKey[Classifier] = web.AppKey("classifier")
METRICS = web.AppKey("metrics", Metrics)
MODEL_INFO = web.AppKey("model_info", dict[str, Any])
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
OPENAPI = web.AppKey("openapi", bytes)
