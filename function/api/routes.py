"""The route table: one place that both the app and the OpenAPI generator read."""

from __future__ import annotations

from aiohttp.typedefs import Handler

from function.api import feedback, handlers, v2

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/", handlers.index),
    ("POST", "/prediction", handlers.prediction),
    ("POST", "/predictions", handlers.predictions),
    ("POST", "/feedback", feedback.feedback),
    ("GET", "/model", handlers.model),
    ("GET", "/healthz", handlers.healthz),
    ("GET", "/readyz", handlers.readyz),
    ("GET", "/metrics", handlers.metrics),
    ("GET", "/openapi.json", handlers.openapi),
    ("GET", "/openapi3.json", handlers.openapi),
    # The Open Inference Protocol (KServe V2, REST)
    ("GET", "/v2", v2.server_metadata),
    ("GET", "/v2/health/live", v2.server_live),
    ("GET", "/v2/health/ready", v2.server_ready),
    ("GET", "/v2/models/{name}", v2.model_metadata_handler),
    ("GET", "/v2/models/{name}/versions/{version}", v2.model_metadata_handler),
    ("GET", "/v2/models/{name}/ready", v2.model_ready),
    ("GET", "/v2/models/{name}/versions/{version}/ready", v2.model_ready),
    ("POST", "/v2/models/{name}/infer", v2.infer),
    ("POST", "/v2/models/{name}/versions/{version}/infer", v2.infer),
)
#: Probes, left out of the access log.
HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
#: Routes that answer in the Open Inference Protocol's shape, errors included.
V2_PREFIX = "/v2"
DOCS_PATH = "/docs"
DOCS_STATIC = "/docs/static"
