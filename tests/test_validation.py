"""Hand validation on the hot path agrees with the marshmallow schemas that document it."""

from __future__ import annotations

from typing import Any

import pytest
from marshmallow import ValidationError

from function.api import schemas
from function.api.validation import flag, prediction_text, prediction_texts
from function.errors import InvalidInput

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
