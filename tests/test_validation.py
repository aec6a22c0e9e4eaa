"""Hand validation on the hot path agrees with the schemas that document it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from marshmallow import ValidationError
from openapi_schema_validator import OAS30Validator

from function.api import schemas
from function.api.open_inference import parse_infer_request
from function.api.validation import flag, prediction_text, prediction_texts
from function.errors import InvalidInput
from function.settings import Settings
from tests.helpers import ROOT

BODIES: list[Any] = [
    {"text": "orbit"},
    {"text": "  x  "},
    {"text": ""},
    {"text": " "},
    {"text": "\u3000"},
    {"text": "\ufeff"},
    {"text": "\u200b"},
    {"text": "\x1c"},
    {"text": "\n\t"},
    {"text": "é"},
    {"text": None},
    {"text": 1},
    {"text": 1.5},
    {"text": True},
    {"text": []},
    {"text": {}},
    {},
    {"other": "x"},
    {"text": "ok", "extra": 1},
]
BATCHES: list[Any] = [
    {"texts": ["a"]},
    {"texts": []},
    {"texts": ["a", ""]},
    {"texts": ["a", 1]},
    {"texts": "a"},
    {"texts": None},
    {},
    {"texts": ["a"] * 256},
    {"texts": ["a"] * 257},
    {"texts": [" ", "b"]},
]


def marshmallow_accepts(schema: type, body: Any) -> bool:
    try:
        schema().load(body, unknown="exclude")
    except ValidationError:
        return False
    return True


def hand_accepts(check: Any, body: Any) -> bool:
    try:
        check(body)
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize("body", BODIES)
def test_single_text_rules_match_the_documented_schema(body: Any) -> None:
    assert hand_accepts(prediction_text, body) == marshmallow_accepts(schemas.ApiRequestSchema, body)


@pytest.mark.parametrize("body", BATCHES)
def test_batch_rules_match_the_documented_schema(body: Any) -> None:
    check = lambda b: prediction_texts(b, schemas.DEFAULT_MAX_BATCH_ITEMS)  # noqa: E731
    assert hand_accepts(check, body) == marshmallow_accepts(schemas.BatchRequestSchema, body)


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_non_objects_are_refused(body: Any) -> None:
    assert not hand_accepts(prediction_text, body)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, False),
        ({"scores": "true"}, True),
        ({"scores": "1"}, True),
        ({"scores": "FALSE"}, False),
        ({"scores": "0"}, False),
    ],
)
def test_scores_flag(query: dict[str, str], expected: bool) -> None:
    assert flag(query, "scores") is expected


def test_bad_flag_is_a_validation_error() -> None:
    with pytest.raises(InvalidInput) as error:
        flag({"scores": "maybe"}, "scores")
    assert error.value.reason == "bad_query"


def tensor(data: Any, shape: Any = None, **extra: Any) -> dict[str, Any]:
    shape = [len(data)] if shape is None else shape
    return {"name": "text", "datatype": "BYTES", "shape": shape, "data": data} | extra


#: Inference requests (JSON alone) whose shape counts their texts and whose outputs are named once:
#: within those rules, which JSON Schema cannot say, the published schema and the codec must agree.
INFER_BODIES: list[Any] = [
    {"inputs": [tensor(["orbit"])]},
    {"inputs": [tensor(["orbit", "goalie"], [2, 1])]},
    {"inputs": [tensor(["a"])], "id": "x", "parameters": {"explain": True, "binary_data_output": False, "x": [1]}},
    {"inputs": [tensor(["a"])], "id": None, "parameters": None, "outputs": None},
    {"inputs": [tensor(["a"], parameters=None)], "outputs": [{"name": "label", "parameters": None}]},
    {"inputs": [tensor(["a"])], "outputs": [{"name": "label"}, {"name": "probabilities"}, {"name": "explanation"}]},
    {"inputs": [tensor(["a"])], "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}]},
    {"inputs": [tensor(["a"] * 256)]},
    {"inputs": [tensor(["a"], [1], other="ignored")], "unknown": {"fields": "ignored"}},
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [0]}]},
    {"inputs": [tensor([], [0])]},
    {"inputs": [tensor(["a"] * 257)]},
    {"inputs": [tensor(["a"], [1, 1, 1])]},
    {"inputs": [tensor(["a"], [True])]},
    {"inputs": [tensor(["a"], ["1"])]},
    {"inputs": [tensor(["  "])]},
    {"inputs": [tensor([7])]},
    {"inputs": [tensor(["a"]) | {"name": "input_0"}]},
    {"inputs": [tensor(["a"]) | {"datatype": "FP32"}]},
    {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]},
    {"inputs": [tensor(["a"]), tensor(["b"])]},
    {"inputs": []},
    {"inputs": [tensor(["a"], parameters=[])]},
    {"inputs": [tensor(["a"])], "outputs": []},
    {"inputs": [tensor(["a"])], "outputs": [{"name": "logits"}]},
    {"inputs": [tensor(["a"])], "outputs": [{"name": "label", "parameters": {"binary_data": None}}]},
    {"inputs": [tensor(["a"])], "parameters": {"explain": 1}},
    {"inputs": [tensor(["a"])], "parameters": []},
    {"inputs": [tensor(["a"])], "id": 5},
    {},
    [],
]


@pytest.fixture(scope="module")
def infer_schema() -> OAS30Validator:
    """The V2 infer request's schema as ``openapi3.json`` publishes it."""
    components = json.loads((ROOT / "openapi3.json").read_bytes())["components"]
    return OAS30Validator({"$ref": "#/components/schemas/V2InferRequest", "components": components})


@pytest.mark.parametrize("body", INFER_BODIES)
def test_infer_rules_match_the_published_schema(infer_schema: OAS30Validator, body: Any) -> None:
    assert hand_accepts(lambda b: parse_infer_request(b, memoryview(b""), Settings.max_batch_items), body) == (
        infer_schema.is_valid(body)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [tensor(["a"], [2])]},
        {"inputs": [tensor(["a", "b"], [2, 2])]},
        {"inputs": [tensor(["a"])], "outputs": [{"name": "label"}, {"name": "label", "parameters": {}}]},
    ],
)
def test_what_the_schema_cannot_say_is_refused(infer_schema: OAS30Validator, body: Any) -> None:
    """The rules the infer operation's description states: the shape counts the texts, an output is named once."""
    assert infer_schema.is_valid(body)
    assert not hand_accepts(lambda b: parse_infer_request(b, memoryview(b""), Settings.max_batch_items), body)
