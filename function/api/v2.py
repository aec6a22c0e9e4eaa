"""HTTP handlers of the Open Inference Protocol (KServe V2, REST); the codec is ``open_inference``.

Inference goes through the same batcher, limits and metrics as ``/prediction``. Errors are the
service's own, rendered in this protocol's shape by the middleware.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_apispec import docs, request_schema, response_schema

from function.api.binary_tensors import HEADER_LENGTH, split_body
from function.api.body import json_body
from function.api.documentation import BODY_ERRORS, V2_TAGS, documented_errors
from function.api.health import check_ready
from function.api.open_inference import EXTENSIONS, infer_response, model_metadata, parse_infer_request
from function.api.paths import SERVICE_NAME
from function.api.responses import json_response
from function.api.state import TIMINGS
from function.api.v2_schemas import (
    V2ErrorSchema,
    V2InferRequestSchema,
    V2InferResponseSchema,
    V2ModelMetadataSchema,
    V2ModelReadySchema,
    V2ServerMetadataSchema,
)
from function.errors import NotFound
from function.jsonio import JSON_CONTENT_TYPE
from function.state import CLASSIFIER, MODEL_INFO, PREDICTION_IDS, SETTINGS

BINARY_CONTENT_TYPE = "application/octet-stream"
_ERRORS = {
    400: "Invalid inference request: not JSON, wrong tensor name, datatype or shape, empty text, unknown output",
    404: "No model of this name (or version) is served",
    408: BODY_ERRORS[408],
    413: BODY_ERRORS[413],
    415: "The Content-Type is neither application/json nor application/octet-stream",
    417: BODY_ERRORS[417],
    503: "Overloaded (retry after the Retry-After header's seconds), not ready, or stopping",
}
_INFER = (
    "The input's shape is [N] or [N, 1] where N is the number of texts in data, and no output is named twice "
    "(rules beyond what the schema can say). Also accepts the binary tensor data extension (tritonclient's "
    "and KServe's default): Content-Type application/octet-stream, the JSON part's length in "
    "Inference-Header-Content-Length, and each binary tensor after the JSON, a BYTES element as a 4-byte "
    "little-endian length and its bytes; binary outputs (binary_data_output, or an output's binary_data) "
    "come back the same way."
)


def _errors(codes: tuple[int, ...]) -> Callable[[Handler], Handler]:
    return documented_errors(V2ErrorSchema, {code: _ERRORS[code] for code in codes})


class tensor_body(json_body):  # noqa: N801 - used as a function: `async with tensor_body(request) as ...`
    """An inference request's body: ``(JSON header, binary tensors after it)``.

    JSON alone, or, with ``Inference-Header-Content-Length``, JSON followed by binary tensor data.
    """

    __slots__ = ()
    MEDIA_TYPES = (JSON_CONTENT_TYPE, BINARY_CONTENT_TYPE)

    def _decode(self, body: bytes) -> tuple[Any, memoryview]:
        head, tail = split_body(body, self._request.headers.get(HEADER_LENGTH))
        return super()._decode(head), tail


def served_model(request: web.Request) -> Mapping[str, Any]:
    """``model.json`` when the path names the served model (and version, if it names one), else 404."""
    info = request.app[MODEL_INFO]
    name, version = request.match_info["name"], request.match_info.get("version")
    if name != info["name"]:
        raise NotFound(f"no model named {name!r} is served here; the model is {info['name']!r}")
    if version is not None and version != info["version"]:
        raise NotFound(f"model {name!r} has no version {version!r}; the version served is {info['version']!r}")
    return info


@docs(tags=V2_TAGS, summary="Server metadata", operationId="v2_server_metadata")
@response_schema(V2ServerMetadataSchema, 200, description="Name, version and protocol extensions")
async def server_metadata(request: web.Request) -> web.Response:
    version = request.app[MODEL_INFO]["version"]
    return json_response({"name": SERVICE_NAME, "version": version, "extensions": list(EXTENSIONS)})


@docs(tags=V2_TAGS, summary="Model metadata: its input and output tensors", operationId="v2_model_metadata")
@response_schema(V2ModelMetadataSchema, 200, description="Name, versions, platform, tensors, labels")
@_errors((404,))
async def model_metadata_handler(request: web.Request) -> web.Response:
    return json_response(model_metadata(served_model(request)))


@docs(tags=V2_TAGS, summary="Model readiness", operationId="v2_model_ready")
@response_schema(V2ModelReadySchema, 200, description="Ready for inference")
@_errors((404, 503))
async def model_ready(request: web.Request) -> web.Response:
    info = served_model(request)
    check_ready(request.app)
    return json_response({"name": info["name"], "ready": True})


@docs(
    tags=V2_TAGS,
    summary="Classify texts: a BYTES tensor in, labels and probabilities out",
    description=_INFER,
    operationId="v2_infer",
    consumes=[JSON_CONTENT_TYPE],
    produces=[JSON_CONTENT_TYPE, BINARY_CONTENT_TYPE],
)
@request_schema(V2InferRequestSchema, required=True)
@response_schema(V2InferResponseSchema, 200, description="The requested outputs, in the order requested")
@_errors(tuple(_ERRORS))
async def infer(request: web.Request) -> web.Response:
    app = request.app
    info, classifier = served_model(request), app[CLASSIFIER]
    async with tensor_body(request) as (header, binary):
        wanted = parse_infer_request(header, binary, app[SETTINGS].max_batch_items)
        del binary  # a view of the body: let it go with the body
        timings = request.get(TIMINGS)
        predictions = await classifier.predict(wanted.texts, wanted.explain, timings)
    ids = app[PREDICTION_IDS]
    prediction_ids = None if ids is None else ids.issue([p.label for p in predictions])
    body, json_length = infer_response(wanted, info, predictions, prediction_ids)
    if json_length is None:
        return web.Response(body=body, content_type=JSON_CONTENT_TYPE)
    return web.Response(body=body, content_type=BINARY_CONTENT_TYPE, headers={HEADER_LENGTH: str(json_length)})
