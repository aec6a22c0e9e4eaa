"""openapi.json (Swagger 2.0) and openapi3.json (OpenAPI 3.0): generated, served byte for byte,
valid, saying the same, and a superset of the challenge contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from function.api.documents import committed_documents
from function.api.routes import ROUTES
from function.model_info import load_model_info
from tests.helpers import ROOT

COMMITTED = ROOT / "openapi.json"
COMMITTED3 = ROOT / "openapi3.json"
DOCUMENT_PATHS = {"/openapi.json", "/openapi3.json"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(json.loads(COMMITTED.read_bytes()))


@pytest.fixture(scope="module")
def challenge() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "tests/prediction-openapi.yaml").read_text()))


@pytest.fixture(scope="module")
def document3() -> dict[str, Any]:
    return dict(json.loads(COMMITTED3.read_bytes()))


@pytest.mark.parametrize("path", sorted(DOCUMENT_PATHS))
async def test_served_documents_are_the_committed_files(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == (ROOT / path.lstrip("/")).read_bytes()


@pytest.mark.parametrize(("major", "committed"), [(2, COMMITTED), (3, COMMITTED3)])
def test_committed_files_are_what_the_generator_writes(major: int, committed: Any) -> None:
    # NOTE: in a process of its own, as `make lint` runs it (aiohttp-apispec documents an app once a process).
    generated = subprocess.run(
        [sys.executable, "-m", "function.api.openapi", str(major)], cwd=ROOT, capture_output=True, check=True
    )
    assert generated.stdout == committed.read_bytes(), "run `make openapi`"
    assert committed_documents()[f"/{committed.name}"] == committed.read_bytes()


def test_document_is_valid_swagger_2(document: dict[str, Any]) -> None:
    assert document["swagger"] == "2.0"
    validate(document)


def test_document_3_is_valid_openapi_3(document3: dict[str, Any]) -> None:
    assert document3["openapi"].startswith("3.0.")
    validate(document3)


def test_both_documents_describe_the_same_operations(document: dict[str, Any], document3: dict[str, Any]) -> None:
    def operations(doc: dict[str, Any]) -> dict[tuple[str, str], tuple[str, set[str]]]:
        return {
            (method, path): (op["operationId"], set(op["responses"]))
            for path, ops in doc["paths"].items()
            for method, op in ops.items()
        }

    assert operations(document) == operations(document3)
    assert set(document["definitions"]) == set(document3["components"]["schemas"])


def test_no_scheme_or_host_is_pinned(document: dict[str, Any], document3: dict[str, Any]) -> None:
    """Clients keep the scheme and host they loaded the document from (HTTPS behind a proxy)."""
    assert "schemes" not in document
    assert "host" not in document
    assert document3["servers"] == [{"url": "/"}]


@pytest.mark.parametrize("name", ["document", "document3"])
def test_labels_model_name_and_version_are_the_models(name: str, request: pytest.FixtureRequest) -> None:
    doc = request.getfixturevalue(name)
    schemas = doc["definitions"] if name == "document" else doc["components"]["schemas"]
    info = load_model_info(ROOT / "model/model.json")
    assert schemas["ApiResponse"]["properties"]["label"]["enum"] == info["labels"]
    assert schemas["BatchResponse"]["properties"]["labels"]["items"]["enum"] == info["labels"]
    path_values = {
        parameter["name"]: parameter.get("enum", parameter.get("schema", {}).get("enum"))
        for ops in doc["paths"].values()
        for op in ops.values()
        for parameter in op.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert path_values == {"name": [info["name"]], "version": [info["version"]]}


@pytest.mark.parametrize("name", ["document", "document3"])
def test_each_operation_has_its_path_parameters_and_an_id_of_its_own(name: str, request: pytest.FixtureRequest) -> None:
    doc = request.getfixturevalue(name)
    ids = []
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            in_path = {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), (path, in_path)
            ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))


def test_request_bodies_have_examples(document3: dict[str, Any]) -> None:
    schemas = document3["components"]["schemas"]
    assert schemas["ApiRequest"]["properties"]["text"]["example"].strip()
    assert len(schemas["BatchRequest"]["properties"]["texts"]["example"]) >= 2
    [example] = schemas["V2InferRequest"]["properties"]["inputs"]["example"]
    assert example["name"] == "text"
    assert example["datatype"] == "BYTES"


def test_challenge_operation_is_kept(document: dict[str, Any], challenge: dict[str, Any]) -> None:
    ours, theirs = document["paths"]["/prediction"]["post"], challenge["paths"]["/prediction"]["post"]
    assert ours["operationId"] == theirs["operationId"]
    assert ours["consumes"] == theirs["consumes"]
    assert ours["produces"] == theirs["produces"]
    [body] = [p for p in ours["parameters"] if p["in"] == "body"]
    assert body["name"] == "body"
    assert body["required"] is True
    assert body["schema"] == {"$ref": "#/definitions/ApiRequest"}
    assert ours["responses"]["200"]["schema"] == {"$ref": "#/definitions/ApiResponse"}
    assert set(theirs["responses"]) <= set(ours["responses"])
    assert {"413", "415", "503", "500"} <= set(ours["responses"])


def test_challenge_definitions_are_kept(document: dict[str, Any], challenge: dict[str, Any]) -> None:
    for name in ("ApiRequest", "ApiResponse"):
        ours, theirs = document["definitions"][name], challenge["definitions"][name]
        assert ours["type"] == theirs["type"]
        for prop, spec in theirs["properties"].items():
            assert ours["properties"][prop]["type"] == spec["type"]


def test_every_route_but_the_document_itself_is_documented(document: dict[str, Any]) -> None:
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    expected = {(method, path) for method, path, _ in ROUTES if path not in DOCUMENT_PATHS}
    assert documented == expected
