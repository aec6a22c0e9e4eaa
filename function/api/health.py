"""The probes: liveness and readiness, in the service's shape and in the Open Inference Protocol's.

Each is a cheap look at state the service keeps anyway; none is written to the access log
(``function.api.paths.HEALTH_PATHS``).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, response_schema

from function.api.documentation import V2_TAGS
from function.api.responses import json_response
from function.api.schemas import ErrorSchema, StatusSchema
from function.api.v2_schemas import V2ErrorSchema, V2LiveSchema, V2ReadySchema
from function.errors import ModelUnavailable
from function.state import CLASSIFIER, LIFECYCLE

#: Why a readiness probe answers 503.
NOT_READY = "Starting, restarting a worker, or shutting down"


def check_alive(app: web.Application) -> None:
    """Liveness: raises 503 when the inference workers keep failing to start."""
    if not app[CLASSIFIER].alive:
        raise ModelUnavailable("the inference workers keep failing to start")


def check_ready(app: web.Application) -> None:
    """Readiness: raises 503 while starting, replacing a worker, or shutting down."""
    if app[LIFECYCLE].draining:
        raise ModelUnavailable("shutting down")
    if not app[CLASSIFIER].ready:
        raise ModelUnavailable("the model or an inference worker is not ready")


@docs(
    tags=["operations"],
    summary="Liveness: the event loop answers and the inference workers can be started",
    operationId="healthz",
)
@response_schema(StatusSchema, 200, description="Alive")
@response_schema(ErrorSchema, 503, description="Inference workers keep failing to start: restart the process")
async def healthz(request: web.Request) -> web.Response:
    check_alive(request.app)
    return json_response({"status": "ok"})


@docs(tags=["operations"], summary="Readiness: model loaded, every worker alive and warm", operationId="readyz")
@response_schema(StatusSchema, 200, description="Ready for traffic")
@response_schema(ErrorSchema, 503, description=NOT_READY)
async def readyz(request: web.Request) -> web.Response:
    check_ready(request.app)
    return json_response({"status": "ready"})


@docs(tags=V2_TAGS, summary="Server liveness", operationId="v2_server_live")
@response_schema(V2LiveSchema, 200, description="Alive")
@response_schema(V2ErrorSchema, 503, description="Inference workers keep failing to start")
async def server_live(request: web.Request) -> web.Response:
    check_alive(request.app)
    return json_response({"live": True})


@docs(tags=V2_TAGS, summary="Server readiness", operationId="v2_server_ready")
@response_schema(V2ReadySchema, 200, description="Ready for inference")
@response_schema(V2ErrorSchema, 503, description=NOT_READY)
async def server_ready(request: web.Request) -> web.Response:
    check_ready(request.app)
    return json_response({"ready": True})
