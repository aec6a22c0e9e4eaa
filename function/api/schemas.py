"""Marshmallow schemas that document the service's own API (aiohttp-apispec turns them into the documents).

``ApiRequest`` and ``ApiResponse`` keep the challenge contract's names and fields. Requests are
validated by hand in ``function.api.validation`` with the same rules (a test holds them together).
Every schema leaves unknown fields out rather than refusing them, as the service does with a
request's, so the documents promise no closed objects (a field added later breaks no client).
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from function.api.validation import TEXT_PATTERN
from function.feedback import ID_PATTERN
from function.inference.classifier import EXPLAINED_TERMS
from function.model_info import REQUIRED
from function.settings import Settings

#: The documented maximum is the default; MAX_BATCH_ITEMS changes the enforced one.
DEFAULT_MAX_BATCH_ITEMS: int = Settings.max_batch_items

EXAMPLE = "The shuttle launch was delayed by the weather at the Cape."


class Open(Schema):
    """A schema whose unknown fields are left out, never refused."""

    class Meta:
        unknown = EXCLUDE


_text = {"description": "The text to perform the prediction on (not empty or only whitespace)"}
_scores = {"description": "Only with ?scores=true: each label's probability (they sum to 1)"}


class ApiRequestSchema(Open):
    text = fields.String(required=True, validate=validate.Regexp(TEXT_PATTERN), metadata=_text | {"example": EXAMPLE})


class TermSchema(Open):
    term = fields.String(required=True)
    weight = fields.Float(
        required=True,
        metadata={
            "description": "The term's evidence-scaled tf-idf weight in the text (0: a word known by its vector only)"
        },
    )
    contribution = fields.Float(
        required=True,
        metadata={
            "description": "weight x the label's coefficient for the term, plus the term's share of the text's "
            "mean word vector times the label's coefficients for it"
        },
    )


class ExplanationSchema(Open):
    label = fields.String(required=True, metadata={"description": "The predicted label, whose decision is explained"})
    decision = fields.Float(
        required=True,
        metadata={"description": "The label's decision value (the largest): intercept + terms + other_terms"},
    )
    intercept = fields.Float(
        required=True, metadata={"description": "log(the label's share of the training data) / the softmax scale"}
    )
    terms = fields.List(
        fields.Nested(TermSchema),
        required=True,
        metadata={"description": f"The {EXPLAINED_TERMS} largest contributions, largest first"},
    )
    other_terms = fields.Float(required=True, metadata={"description": "The sum of the other terms' contributions"})


_explanation = {"description": "Only with ?explain=true: why the text got its label"}


_prediction_id = (
    "Only when FEEDBACK_KEY is set: names this prediction in POST /feedback (signed; valid for "
    "FEEDBACK_MAX_AGE_SECONDS)"
)


class ApiResponseSchema(Open):
    label = fields.String(required=True, metadata={"description": "The prediction label"})
    prediction_id = fields.String(metadata={"description": _prediction_id})
    scores = fields.Dict(keys=fields.String(), values=fields.Float(), metadata=_scores)
    explanation = fields.Nested(ExplanationSchema, metadata=_explanation)


class BatchRequestSchema(Open):
    texts = fields.List(
        fields.String(validate=validate.Regexp(TEXT_PATTERN)),
        required=True,
        validate=validate.Length(min=1, max=DEFAULT_MAX_BATCH_ITEMS),
        metadata={
            "description": f"Texts to classify, 1 to MAX_BATCH_ITEMS (default {DEFAULT_MAX_BATCH_ITEMS})",
            "example": [EXAMPLE, "The goalie stopped every shot in the third period."],
        },
    )


class BatchResponseSchema(Open):
    labels = fields.List(
        fields.String(), required=True, metadata={"description": "One label per text, in the order of the request"}
    )
    prediction_ids = fields.List(fields.String(), metadata={"description": f"One per text. {_prediction_id}"})
    scores = fields.List(fields.Dict(keys=fields.String(), values=fields.Float()), metadata=_scores)
    explanations = fields.List(fields.Nested(ExplanationSchema), metadata=_explanation)


class FeedbackRequestSchema(Open):
    prediction_id = fields.String(
        required=True,
        validate=validate.Regexp(f"^{ID_PATTERN}$"),
        metadata={
            "description": "The prediction_id of an answer of /prediction, /predictions or V2 infer. Its shape is "
            "the pattern's; only its signature, which no schema can check, tells an id the service issued (403)"
        },
    )
    label = fields.String(required=True, metadata={"description": "The text's true label: one of the model's labels"})


class FeedbackResponseSchema(Open):
    model_version = fields.String(required=True, metadata={"description": "The model version that predicted"})
    predicted = fields.String(required=True, metadata={"description": "The label it predicted"})
    actual = fields.String(required=True, metadata={"description": "The label fed back"})


class ErrorSchema(Open):
    error = fields.String(required=True, metadata={"description": "A stable machine-readable code"})
    detail = fields.String(required=True, metadata={"description": "What was wrong, for people"})


class StatusSchema(Open):
    status = fields.String(required=True)


class IndexSchema(Open):
    service = fields.String(required=True)
    model = fields.Dict(required=True, metadata={"description": "name, version and labels"})
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


_JSON_FIELDS: dict[type, type[fields.Field]] = {str: fields.String, dict: fields.Dict}

#: model.json's required keys (``function.model_info.REQUIRED``); the rest of the file is shown as it is.
ModelSchema = Open.from_dict(
    {
        key: fields.List(fields.String(), required=True) if kind is list else _JSON_FIELDS[kind](required=True)
        for key, kind in REQUIRED.items()
    },
    name="ModelSchema",
)
