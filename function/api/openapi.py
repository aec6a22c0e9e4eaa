"""The API documents: Swagger 2.0 (``openapi.json``) and OpenAPI 3.0 (``openapi3.json``).

``python -m function.api.openapi [2|3]`` generates a document from the handlers' schemas: the
Swagger 2.0 one with aiohttp-apispec, the OpenAPI 3.0 one converted from it, so that both always
say the same. ``make openapi`` commits them; ``make test`` checks that they are current. The
service serves the committed files, byte for byte, and never generates them. The label list,
model name and version in them come from ``model/model.json``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from function.api.documented import records
from function.api.routes import ROUTES
from function.errors import StartupError
from function.jsonio import dumps_pretty
from function.model_info import load_model_info
from function.settings import Settings

_ROOT = Path(__file__).resolve().parents[2]
#: The committed documents, beside ``function/`` in a checkout and in the image, by URL path.
DOCUMENTS = {"/openapi.json": _ROOT / "openapi.json", "/openapi3.json": _ROOT / "openapi3.json"}
OPENAPI_VERSION = "3.0.3"
_BINARY_BODY = "application/octet-stream"

TITLE = "Prediction API"
API_VERSION = "1.1.0"
DESCRIPTION = (
    "Classifies newsgroup posts into six topics. A compatible superset of the challenge's "
    "prediction API: POST /prediction is unchanged; the other operations are additions."
)


def generate_document(major: int = 2, info: Mapping[str, Any] | None = None) -> bytes:
    """The document as the handlers' schemas describe it: what ``openapi.json`` (2) or ``openapi3.json`` (3) holds.

    ``info`` is the model's ``model.json`` (by default the committed model's).
    """
    info = load_model_info(Settings().metadata_path) if info is None else info
    swagger = _with_model(_spec_dict(), info)
    return dumps_pretty(swagger if major == 2 else to_openapi3(swagger))


def committed_documents() -> dict[str, bytes]:
    """The committed documents by the URL path they are served at."""
    documents = {}
    for url, path in DOCUMENTS.items():
        try:
            documents[url] = path.read_bytes()
        except OSError as exc:
            raise StartupError(f"cannot read the API document {path}: {exc}") from None
    return documents


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
    swagger = _refs_to_components(copy.deepcopy(dict(swagger)))
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
    consumes = operation.pop("consumes", ["application/json"])
    produces = operation.pop("produces", ["application/json"])
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
    for response in operation["responses"].values():
        schema = response.pop("schema", None)
        response.pop("required", None)
        if schema is not None:
            response["content"] = {produces[0]: {"schema": schema}}
        elif produces != ["application/json"]:
            response["content"] = {produces[0]: {"schema": {"type": "string"}}}
    return operation


def _refs_to_components(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/definitions/")
        for value in node.values():
            _refs_to_components(value)
    elif isinstance(node, list):
        for value in node:
            _refs_to_components(value)
    return node


def _spec_dict() -> dict[str, Any]:
    from aiohttp_apispec import AiohttpApiSpec

    # NOTE: aiohttp-apispec consumes each handler's __apispec__ while registering (and keys a
    # throwaway app with strings), so it works on stand-ins, on an app that is never run.
    scratch = web.Application()
    for method, path, handler in ROUTES:
        stand_in = _described(handler)
        if stand_in is not None:
            if "{version}" in path:  # one handler serves both spellings; operation ids must differ
                getattr(stand_in, "__apispec__")["operationId"] += "_version"  # noqa: B009
            scratch.router.add_route(method, path, stand_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        AiohttpApiSpec(
            url=None,
            app=scratch,
            in_place=True,
            title=TITLE,
            version=API_VERSION,
            info={"description": DESCRIPTION},
            basePath="/",
        )
        return scratch["swagger_dict"]  # type: ignore[no-any-return]


def _described(handler: Handler) -> Handler | None:
    """A fresh stand-in for ``handler`` carrying its documentation (``function.api.documented``),
    applied with aiohttp-apispec's decorators; None for an undocumented handler."""
    import aiohttp_apispec

    from function.api import schemas

    recorded = records(handler)
    if not recorded:
        return None

    async def stand_in(request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    described: Handler = stand_in
    for name, args, kwargs in recorded:
        if name != "docs":  # the schema comes first, by name
            args = (getattr(schemas, args[0]), *args[1:])
        described = getattr(aiohttp_apispec, name)(*args, **kwargs)(described)
    return described


if __name__ == "__main__":
    import sys

    sys.stdout.buffer.write(generate_document(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
