"""openapi.json: generated, served byte for byte, valid, and a superset of the challenge contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from function.api.openapi import committed_document, generate_document
from function.api.routes import ROUTES
from tests.helpers import ROOT

COMMITTED = ROOT / "openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(json.loads(COMMITTED.read_bytes()))


@pytest.fixture(scope="module")
def challenge() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "tests/prediction-openapi.yaml").read_text()))


async def test_served_document_is_the_committed_file(client: TestClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == COMMITTED.read_bytes()


def test_committed_file_is_what_the_generator_writes() -> None:
    assert generate_document() == COMMITTED.read_bytes(), "run `make openapi`"
    assert committed_document() == COMMITTED.read_bytes()


def test_document_is_valid_swagger_2(document: dict[str, Any]) -> None:
    assert document["swagger"] == "2.0"
    validate(document)


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
    expected = {(method, path) for method, path, _ in ROUTES if path != "/openapi.json"}
    assert documented == expected
