"""HTTP handlers: parse, call the classifier, encode. Errors are raised, never caught here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler

from function.api.body import json_body
from function.api.documented import docs, request_schema, response_schema
from function.api.explanations import explanation_json
from function.api.responses import json_response
from function.api.validation import flag, prediction_text, prediction_texts
from function.errors import ModelUnavailable
from function.inference.classifier import Prediction
from function.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from function.state import CLASSIFIER, LIFECYCLE, METRICS, MODEL_INFO, OPENAPI, PREDICTION_IDS, SETTINGS

_SCORES = {
    "in": "query",
    "name": "scores",
    "type": "boolean",
    "required": False,
    # NOTE: the service reads an empty value (`?scores=`) as false; Swagger 2.0 needs saying so.
    "allowEmptyValue": True,
    "description": "Also return each label's probability (an empty value means false)",
}
_EXPLAIN = {
    "in": "query",
    "name": "explain",
    "type": "boolean",
    "required": False,
    "allowEmptyValue": True,
    "description": "Also return why each text got its label: the terms that contributed most to the label's "
    "decision value, with the intercept and the rest (an empty value means false)",
}
#: The service's name (the index and the Open Inference Protocol's server metadata).
SERVICE_NAME = "newsgroups-classifier"
#: Answers of every route that reads a body (``function.api.body``), by status.
BODY_ERRORS = {
    408: "The body did not arrive within BODY_TIMEOUT_SECONDS",
    413: "The body is (or is declared) larger than MAX_BODY_BYTES",
    417: "An Expect header other than 100-continue",
}
_ERRORS = {
    405: "Validation exception: the body is not JSON, not an object, or a text is missing, "
    "not a string, empty or only whitespace",
    408: BODY_ERRORS[408],
    413: BODY_ERRORS[413],
    415: "The Content-Type is not application/json (send the header 'Content-Type: application/json')",
    417: BODY_ERRORS[417],
    503: "Overloaded (too many texts queued or request bytes in memory: retry after the Retry-After "
    "header's seconds), not ready, or stopping",
    500: "Unexpected error (logged with the request id; no details are returned)",
}


def documented_errors(schema: str, descriptions: Mapping[int, str]) -> Callable[[Handler], Handler]:
    """A decorator documenting each status of ``descriptions`` as an answer in ``schema`` (a class name)."""

    def decorate(func: Handler) -> Handler:
        for code, text in descriptions.items():
            func = response_schema(schema, code, description=text)(func)
        return func

    return decorate


_errors = documented_errors("ErrorSchema", _ERRORS)


def _options(request: web.Request) -> tuple[bool, bool]:
    """``?scores`` and ``?explain``; without a query string (most requests), nothing is parsed."""
    if not request.query_string:
        return False, False
    return flag(request.query, "scores"), flag(request.query, "explain")


def _scores(labels: Sequence[str], prediction: Prediction) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, prediction.probabilities, strict=True)}


@docs(
    tags=["prediction"],
    summary="Classify one text",
    operationId="prediction",
    consumes=["application/json"],
    parameters=[_SCORES, _EXPLAIN],
)
@request_schema("ApiRequestSchema", required=True)
@response_schema("ApiResponseSchema", 200, description="Successful prediction")
@_errors
async def prediction(request: web.Request) -> web.Response:
    classifier = request.app[CLASSIFIER]
    async with json_body(request) as body:
        text = prediction_text(body)
        with_scores, explain = _options(request)
        [result] = await classifier.predict([text], explain)
    answer: dict[str, object] = {"label": result.label}
    ids = request.app[PREDICTION_IDS]
    if ids is not None:
        answer["prediction_id"] = ids.issue_one(result.label)
    if with_scores:
        answer["scores"] = _scores(classifier.labels, result)
    if explain:
        answer["explanation"] = explanation_json(result.label, result.explanation)
    return json_response(answer)


@docs(
    tags=["prediction"],
    summary="Classify a batch of texts, answered in order",
    operationId="predictions",
    consumes=["application/json"],
    parameters=[_SCORES, _EXPLAIN],
)
@request_schema("BatchRequestSchema", required=True)
@response_schema("BatchResponseSchema", 200, description="One label per text, in order")
@_errors
async def predictions(request: web.Request) -> web.Response:
    classifier = request.app[CLASSIFIER]
    async with json_body(request) as body:
        texts = prediction_texts(body, request.app[SETTINGS].max_batch_items)
        with_scores, explain = _options(request)
        results = await classifier.predict(texts, explain)
    labels = [r.label for r in results]
    answer: dict[str, object] = {"labels": labels}
    ids = request.app[PREDICTION_IDS]
    if ids is not None:
        answer["prediction_ids"] = ids.issue(labels)
    if with_scores:
        answer["scores"] = [_scores(classifier.labels, r) for r in results]
    if explain:
        answer["explanations"] = [explanation_json(r.label, r.explanation) for r in results]
    return json_response(answer)


@docs(tags=["operations"], summary="Where to start: links to the docs, the model and the metrics", operationId="index")
@response_schema("IndexSchema", 200, description="The service, its model, and links")
async def index(request: web.Request) -> web.Response:
    info = request.app[MODEL_INFO]
    return json_response(
        {
            "service": SERVICE_NAME,
            "model": {"name": info["name"], "version": info["version"], "labels": info["labels"]},
            "links": INDEX_LINKS,
        }
    )


INDEX_LINKS = {
    "docs": "/docs",
    "openapi": "/openapi3.json",
    "swagger": "/openapi.json",
    "model": "/model",
    "metrics": "/metrics",
    "prediction": "/prediction",
    "predictions": "/predictions",
    "feedback": "/feedback",
    "open_inference": "/v2",
}


@docs(tags=["model"], summary="Metadata of the served model (model/model.json)", operationId="model")
@response_schema("ModelSchema", 200, description="Name, version, labels, SHA-256, metrics")
async def model(request: web.Request) -> web.Response:
    return json_response(request.app[MODEL_INFO])


@docs(
    tags=["operations"],
    summary="Liveness: the event loop answers and the inference workers can be started",
    operationId="healthz",
)
@response_schema("StatusSchema", 200, description="Alive")
@response_schema("ErrorSchema", 503, description="Inference workers keep failing to start: restart the process")
async def healthz(request: web.Request) -> web.Response:
    check_alive(request.app)
    return json_response({"status": "ok"})


@docs(tags=["operations"], summary="Readiness: model loaded, every worker alive and warm", operationId="readyz")
@response_schema("StatusSchema", 200, description="Ready for traffic")
@response_schema("ErrorSchema", 503, description="Starting, restarting a worker, or shutting down")
async def readyz(request: web.Request) -> web.Response:
    check_ready(request.app)
    return json_response({"status": "ready"})


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
    summary="Prometheus metrics",
    operationId="metrics",
    produces=["text/plain"],
    responses={"200": {"description": "Prometheus text exposition format"}},
)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI][request.path], content_type="application/json")
