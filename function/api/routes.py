"""The route table: what the app serves, and so what ``function.api.openapi`` documents.

Nothing below it imports it: the paths those layers need are in ``function.api.paths``.
"""

from __future__ import annotations

from aiohttp.typedefs import Handler

from function.api import documents, events, feedback, handlers, health, v2
from function.api.paths import OPENAPI_PATH, SWAGGER_PATH
from function.cloudevents.event_types import EVENTS_PATH

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/", handlers.index),
    ("POST", EVENTS_PATH, events.cloudevent),
    ("POST", "/prediction", handlers.prediction),
    ("POST", "/predictions", handlers.predictions),
    ("POST", "/feedback", feedback.feedback),
    ("GET", "/model", handlers.model),
    ("GET", "/healthz", health.healthz),
    ("GET", "/readyz", health.readyz),
    ("GET", "/metrics", handlers.metrics),
    ("GET", SWAGGER_PATH, documents.document),
    ("GET", OPENAPI_PATH, documents.document),
    # The Open Inference Protocol (KServe V2, REST).
    # NOTE: each path without the version comes before its spelling with it: aiohttp-apispec
    # documents a handler's second route from what its first left behind (tests/test_openapi.py
    # checks each operation's path parameters).
    ("GET", "/v2", v2.server_metadata),
    ("GET", "/v2/health/live", health.server_live),
    ("GET", "/v2/health/ready", health.server_ready),
    ("GET", "/v2/models/{name}", v2.model_metadata_handler),
    ("GET", "/v2/models/{name}/versions/{version}", v2.model_metadata_handler),
    ("GET", "/v2/models/{name}/ready", v2.model_ready),
    ("GET", "/v2/models/{name}/versions/{version}/ready", v2.model_ready),
    ("POST", "/v2/models/{name}/infer", v2.infer),
    ("POST", "/v2/models/{name}/versions/{version}/infer", v2.infer),
)
