"""Marshmallow schemas that document the API (aiohttp-apispec turns them into openapi.json).

``ApiRequest`` and ``ApiResponse`` keep the challenge contract's names and fields. Requests are
validated by hand in ``function.validation`` with the same rules (a test holds them together).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from function.validation import TEXT_PATTERN

DEFAULT_MAX_BATCH_ITEMS = 256  # documented maximum; MAX_BATCH_ITEMS changes the enforced one

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


class ModelSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    labels = fields.List(fields.String(), required=True)
    sha256 = fields.String(required=True)
    metrics = fields.Dict(required=True)
