"""The route table: one place that both the app and the OpenAPI generator read."""

from __future__ import annotations

from aiohttp.typedefs import Handler

from function.api import handlers

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/prediction", handlers.prediction),
    ("POST", "/predictions", handlers.predictions),
    ("GET", "/model", handlers.model),
    ("GET", "/healthz", handlers.healthz),
    ("GET", "/readyz", handlers.readyz),
    ("GET", "/metrics", handlers.metrics),
    ("GET", "/openapi.json", handlers.openapi),
)
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
DOCS_PATH = "/docs"
DOCS_STATIC = "/docs/static"
