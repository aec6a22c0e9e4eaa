"""The API documents: Swagger 2.0 (``openapi.json``) and OpenAPI 3.0 (``openapi3.json``), from the app.

``python -m function.api.openapi [2|3]`` builds the app as the service does (``create_app``, which
starts no worker until the app runs) and documents its routes with aiohttp-apispec, from the
decorators on the handlers; the OpenAPI 3.0 document is converted from the Swagger 2.0 one, so
that both always say the same. ``make openapi`` commits them; ``make lint`` checks that they are
current. The service serves the committed files (``function.api.documents``) and never generates
them. The labels, model name and version in them come from ``model/model.json``.

NOTE: aiohttp-apispec consumes what its decorators put on a handler as it documents the handler,
so a process documents the app once. It also keys the app with strings, which aiohttp warns
about when warnings are on (under pytest: its tests run this module as ``make lint`` does).
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Mapping
from typing import Any

from aiohttp_apispec import setup_aiohttp_apispec

from function.app import create_app
from function.jsonio import JSON_CONTENT_TYPE, dumps_pretty
from function.settings import Settings
from function.state import MODEL_INFO

OPENAPI_VERSION = "3.0.3"
_BINARY_BODY = "application/octet-stream"
_JSON = JSON_CONTENT_TYPE

TITLE = "Prediction API"
API_VERSION = "1.1.0"
DESCRIPTION = (
    "Classifies newsgroup posts into six topics. A compatible superset of the challenge's "
    "prediction API: POST /prediction is unchanged; the other operations are additions."
)


def generate_document(major: int = 2) -> bytes:
    """The document of the app's routes: what ``openapi.json`` (2) or ``openapi3.json`` (3) holds."""
    swagger = copy.deepcopy(_swagger())
    return dumps_pretty(swagger if major == 2 else to_openapi3(swagger))


@functools.cache
def _swagger() -> dict[str, Any]:
    """The Swagger 2.0 document of the app that ``create_app`` builds (once a process: see the NOTE above)."""
    app = create_app(Settings())
    documented = setup_aiohttp_apispec(
        app, title=TITLE, version=API_VERSION, url=None, in_place=True, info={"description": DESCRIPTION}, basePath="/"
    )
    swagger: dict[str, Any] = documented.swagger_dict()
    info = app[MODEL_INFO]
    return _with_model(_one_operation_each(swagger), info)


def _one_operation_each(spec: dict[str, Any]) -> dict[str, Any]:
    """Each operation once, under an id of its own.

    aiohttp routes HEAD to every GET handler (RFC 9110), and HEAD is GET without a body: GET alone
    is documented. One handler serves both spellings of a V2 path, with and without the model's
    version; the spelling with the version gets its own operation id.
    """
    for path, operations in spec["paths"].items():
        operations.pop("head", None)
        if "{version}" in path:
            for operation in operations.values():
                operation["operationId"] += "_version"
    return spec


def _with_model(spec: dict[str, Any], info: Mapping[str, Any]) -> dict[str, Any]:
    """Pin what the model fixes: the labels a prediction can be, the model name and version in paths."""
    labels = {"enum": list(info["labels"])}
    definitions = spec["definitions"]
    definitions["ApiResponse"]["properties"]["label"] |= labels | {"example": info["labels"][-1]}
    definitions["BatchResponse"]["properties"]["labels"]["items"] |= labels
    definitions["FeedbackRequest"]["properties"]["label"] |= labels
    for operations in spec["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    parameter["enum"] = [info[parameter["name"]]]
    return spec


def to_openapi3(swagger: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 from this service's Swagger 2.0 document (the subset aiohttp-apispec emits).

    The server URL is relative ("/"): clients and Swagger UI keep the scheme and host they
    loaded the document from, so it works behind a TLS-terminating proxy under any host name.
    """
    swagger = _schemas3(copy.deepcopy(dict(swagger)))
    paths: dict[str, Any] = {}
    for path, operations in swagger["paths"].items():
        paths[path] = {method: _operation3(op) for method, op in operations.items()}
    return {
        "openapi": OPENAPI_VERSION,
        "info": swagger["info"],
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": swagger["definitions"]},
    }


def _operation3(operation: dict[str, Any]) -> dict[str, Any]:
    consumes = operation.pop("consumes", [_JSON])
    produces = operation.pop("produces", [_JSON])
    parameters = []
    for parameter in operation.pop("parameters", []):
        if parameter["in"] == "body":
            content = {
                media: {"schema": {"type": "string", "format": "binary"}}
                if media == _BINARY_BODY
                else {"schema": parameter["schema"]}
                for media in consumes
            }
            operation["requestBody"] = {"required": parameter.get("required", False), "content": content}
            continue
        schema = {key: parameter.pop(key) for key in ("type", "enum", "format", "items", "default") if key in parameter}
        parameters.append(parameter | {"schema": schema})
    if parameters:
        operation["parameters"] = parameters
    for status, response in operation["responses"].items():
        schema = response.pop("schema", None)
        response.pop("required", None)
        if schema is not None and not status.startswith("2"):
            response["content"] = {_JSON: {"schema": schema}}  # every error is JSON
        elif schema is not None:
            # NOTE: a success in the first media type (an event answers structured events as one),
            # and binary tensors too where the operation answers them.
            binary = _BINARY_BODY in produces
            response["content"] = {produces[0]: {"schema": schema}} | (
                {_BINARY_BODY: {"schema": {"type": "string", "format": "binary"}}} if binary else {}
            )
        elif produces != [_JSON]:
            response["content"] = {produces[0]: {"schema": {"type": "string"}}}
    return operation


def _schemas3(node: Any) -> Any:
    """Swagger 2.0's spellings in OpenAPI 3.0's: references into ``components``, ``x-nullable`` as ``nullable``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/definitions/")
        if "x-nullable" in node:
            node["nullable"] = node.pop("x-nullable")
        for value in node.values():
            _schemas3(value)
    elif isinstance(node, list):
        for value in node:
            _schemas3(value)
    return node


if __name__ == "__main__":
    sys.stdout.buffer.write(generate_document(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
