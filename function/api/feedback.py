"""``POST /feedback``: the true label of an earlier prediction, named by its prediction id."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema

from function.api.body import json_body
from function.api.documentation import BODY_ERRORS, documented_errors
from function.api.responses import json_response
from function.api.schemas import ErrorSchema, FeedbackRequestSchema, FeedbackResponseSchema
from function.api.validation import feedback_fields
from function.errors import FeedbackDisabled
from function.feedback import HOW_TO_ENABLE
from function.state import METRICS, PREDICTION_IDS

_ERRORS = {
    400: "prediction_id is not an id this service issues",
    403: "prediction_id is not signed with this service's FEEDBACK_KEY: forged, or altered",
    404: "Feedback is off: FEEDBACK_KEY is not set (the detail says how to turn it on)",
    405: "Validation exception: the body is not a JSON object with the strings prediction_id and label",
    409: "Feedback on this prediction_id was already counted (by this pod)",
    410: "prediction_id is older than FEEDBACK_MAX_AGE_SECONDS",
    422: "label is not one of the model's labels",
    **BODY_ERRORS,
    415: "The Content-Type is not application/json",
    503: "Too many request bytes in memory (retry after the Retry-After header's seconds), or stopping",
}


@docs(
    tags=["prediction"],
    summary="Tell the service the true label of one of its predictions",
    description="Counted in textclf_feedback_total{model_version, predicted, actual}, from which the dashboard "
    "computes live accuracy by model version. Any pod of any revision with the same FEEDBACK_KEY accepts an id; "
    "each pod counts an id once. Refusals are counted in textclf_feedback_rejected_total{reason}.",
    operationId="feedback",
    consumes=["application/json"],
)
@request_schema(FeedbackRequestSchema, required=True)
@response_schema(FeedbackResponseSchema, 200, description="Counted")
@documented_errors(ErrorSchema, _ERRORS)
async def feedback(request: web.Request) -> web.Response:
    ids = request.app[PREDICTION_IDS]
    if ids is None:
        raise FeedbackDisabled(HOW_TO_ENABLE)
    async with json_body(request) as body:
        prediction_id, label = feedback_fields(body)
    claim = ids.check(prediction_id, label)
    request.app[METRICS].feedback.labels(claim.version, claim.label, label).inc()
    return json_response({"model_version": claim.version, "predicted": claim.label, "actual": label})
