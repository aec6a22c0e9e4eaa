"""The service's own HTTP handlers: parse, call the classifier, encode. Errors are raised, never caught here."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema

from function.api.answers import many_answer, one_answer
from function.api.body import json_body
from function.api.documentation import BODY_ERRORS, documented_errors
from function.api.paths import DOCS_PATH, OPENAPI_PATH, SERVICE_NAME, SWAGGER_PATH, V2_PREFIX
from function.api.responses import json_response
from function.api.schemas import (
    ApiRequestSchema,
    ApiResponseSchema,
    BatchRequestSchema,
    BatchResponseSchema,
    ErrorSchema,
    IndexSchema,
    ModelSchema,
)
from function.api.state import TIMINGS
from function.api.validation import flag, prediction_text, prediction_texts
from function.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from function.state import CLASSIFIER, METRICS, MODEL_INFO, PREDICTION_IDS, SETTINGS

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
_errors = documented_errors(ErrorSchema, _ERRORS)


def _options(request: web.Request) -> tuple[bool, bool]:
    """``?scores`` and ``?explain``; without a query string (most requests), nothing is parsed."""
    if not request.query_string:
        return False, False
    return flag(request.query, "scores"), flag(request.query, "explain")


@docs(
    tags=["prediction"],
    summary="Classify one text",
    operationId="prediction",
    consumes=["application/json"],
    parameters=[_SCORES, _EXPLAIN],
)
@request_schema(ApiRequestSchema, required=True)
@response_schema(ApiResponseSchema, 200, description="Successful prediction")
@_errors
async def prediction(request: web.Request) -> web.Response:
    app = request.app
    classifier = app[CLASSIFIER]
    async with json_body(request) as body:
        text = prediction_text(body)
        with_scores, explain = _options(request)
        [result] = await classifier.predict([text], explain, request.get(TIMINGS))
    ids = app[PREDICTION_IDS]
    return json_response(one_answer(result, classifier.labels, ids, scores=with_scores, explain=explain))


@docs(
    tags=["prediction"],
    summary="Classify a batch of texts, answered in order",
    operationId="predictions",
    consumes=["application/json"],
    parameters=[_SCORES, _EXPLAIN],
)
@request_schema(BatchRequestSchema, required=True)
@response_schema(BatchResponseSchema, 200, description="One label per text, in order")
@_errors
async def predictions(request: web.Request) -> web.Response:
    app = request.app
    classifier = app[CLASSIFIER]
    async with json_body(request) as body:
        texts = prediction_texts(body, app[SETTINGS].max_batch_items)
        with_scores, explain = _options(request)
        results = await classifier.predict(texts, explain, request.get(TIMINGS))
    ids = app[PREDICTION_IDS]
    return json_response(many_answer(results, classifier.labels, ids, scores=with_scores, explain=explain))


@docs(tags=["operations"], summary="Where to start: links to the docs, the model and the metrics", operationId="index")
@response_schema(IndexSchema, 200, description="The service, its model, and links")
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
    "docs": DOCS_PATH,
    "openapi": OPENAPI_PATH,
    "swagger": SWAGGER_PATH,
    "model": "/model",
    "metrics": "/metrics",
    "prediction": "/prediction",
    "predictions": "/predictions",
    "feedback": "/feedback",
    "open_inference": V2_PREFIX,
}


@docs(tags=["model"], summary="Metadata of the served model (model/model.json)", operationId="model")
@response_schema(ModelSchema, 200, description="Name, version, labels, SHA-256, metrics")
async def model(request: web.Request) -> web.Response:
    return json_response(request.app[MODEL_INFO])


@docs(
    tags=["operations"],
    summary="Prometheus metrics",
    operationId="metrics",
    produces=["text/plain"],
    responses={"200": {"description": "Prometheus text exposition format"}},
)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})
