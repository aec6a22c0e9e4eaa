"""Marshmallow schemas that document the API (aiohttp-apispec turns them into openapi.json).

``ApiRequest`` and ``ApiResponse`` keep the challenge contract's names and fields. Requests are
validated by hand in ``function.validation`` with the same rules (a test holds them together).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from function.api.validation import TEXT_PATTERN
from function.model_info import REQUIRED
from function.settings import Settings

#: The documented maximum is the default; MAX_BATCH_ITEMS changes the enforced one.
DEFAULT_MAX_BATCH_ITEMS: int = Settings.max_batch_items

_text = {"description": "The text to perform the prediction on (not empty or only whitespace)"}
_scores = {"description": "Only with ?scores=true: each label's probability (they sum to 1)"}


class ApiRequestSchema(Schema):
    text = fields.String(required=True, validate=validate.Regexp(TEXT_PATTERN), metadata=_text)


class ApiResponseSchema(Schema):
    label = fields.String(required=True, metadata={"description": "The prediction label"})
    scores = fields.Dict(keys=fields.String(), values=fields.Float(), metadata=_scores)


class BatchRequestSchema(Schema):
    texts = fields.List(
        fields.String(validate=validate.Regexp(TEXT_PATTERN)),
        required=True,
        validate=validate.Length(min=1, max=DEFAULT_MAX_BATCH_ITEMS),
        metadata={"description": f"Texts to classify, 1 to MAX_BATCH_ITEMS (default {DEFAULT_MAX_BATCH_ITEMS})"},
    )


class BatchResponseSchema(Schema):
    labels = fields.List(
        fields.String(), required=True, metadata={"description": "One label per text, in the order of the request"}
    )
    scores = fields.List(fields.Dict(keys=fields.String(), values=fields.Float()), metadata=_scores)


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "A stable machine-readable code"})
    detail = fields.String(required=True, metadata={"description": "What was wrong, for people"})


class StatusSchema(Schema):
    status = fields.String(required=True)


_JSON_FIELDS: dict[type, type[fields.Field]] = {str: fields.String, dict: fields.Dict}

#: model.json's required keys (``function.model_info.REQUIRED``); the rest of the file is shown as it is.
ModelSchema = Schema.from_dict(
    {
        key: fields.List(fields.String(), required=True) if kind is list else _JSON_FIELDS[kind](required=True)
        for key, kind in REQUIRED.items()
    },
    name="ModelSchema",
)
