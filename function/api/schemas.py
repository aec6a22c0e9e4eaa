"""Marshmallow schemas that document the API (aiohttp-apispec turns them into openapi.json).

``ApiRequest`` and ``ApiResponse`` keep the challenge contract's names and fields. Requests are
validated by hand in ``function.validation`` with the same rules (a test holds them together).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from function.api.open_inference import REQUESTABLE
from function.api.validation import TEXT_PATTERN
from function.feedback import ID_PATTERN
from function.inference.classifier import EXPLAINED_TERMS
from function.model_info import INPUT, REQUIRED
from function.settings import Settings

#: The documented maximum is the default; MAX_BATCH_ITEMS changes the enforced one.
DEFAULT_MAX_BATCH_ITEMS: int = Settings.max_batch_items

_EXAMPLE = "The shuttle launch was delayed by the weather at the Cape."
_text = {"description": "The text to perform the prediction on (not empty or only whitespace)"}
_scores = {"description": "Only with ?scores=true: each label's probability (they sum to 1)"}


class ApiRequestSchema(Schema):
    text = fields.String(required=True, validate=validate.Regexp(TEXT_PATTERN), metadata=_text | {"example": _EXAMPLE})


class TermSchema(Schema):
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


class ExplanationSchema(Schema):
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


class ApiResponseSchema(Schema):
    label = fields.String(required=True, metadata={"description": "The prediction label"})
    prediction_id = fields.String(metadata={"description": _prediction_id})
    scores = fields.Dict(keys=fields.String(), values=fields.Float(), metadata=_scores)
    explanation = fields.Nested(ExplanationSchema, metadata=_explanation)


class BatchRequestSchema(Schema):
    texts = fields.List(
        fields.String(validate=validate.Regexp(TEXT_PATTERN)),
        required=True,
        validate=validate.Length(min=1, max=DEFAULT_MAX_BATCH_ITEMS),
        metadata={
            "description": f"Texts to classify, 1 to MAX_BATCH_ITEMS (default {DEFAULT_MAX_BATCH_ITEMS})",
            "example": [_EXAMPLE, "The goalie stopped every shot in the third period."],
        },
    )


class BatchResponseSchema(Schema):
    labels = fields.List(
        fields.String(), required=True, metadata={"description": "One label per text, in the order of the request"}
    )
    prediction_ids = fields.List(fields.String(), metadata={"description": f"One per text. {_prediction_id}"})
    scores = fields.List(fields.Dict(keys=fields.String(), values=fields.Float()), metadata=_scores)
    explanations = fields.List(fields.Nested(ExplanationSchema), metadata=_explanation)


class FeedbackRequestSchema(Schema):
    prediction_id = fields.String(
        required=True,
        validate=validate.Regexp(f"^{ID_PATTERN}$"),
        metadata={
            "description": "The prediction_id of an answer of /prediction, /predictions or V2 infer. Its shape is "
            "the pattern's; only its signature, which no schema can check, tells an id the service issued (403)"
        },
    )
    label = fields.String(required=True, metadata={"description": "The text's true label: one of the model's labels"})


class FeedbackResponseSchema(Schema):
    model_version = fields.String(required=True, metadata={"description": "The model version that predicted"})
    predicted = fields.String(required=True, metadata={"description": "The label it predicted"})
    actual = fields.String(required=True, metadata={"description": "The label fed back"})


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "A stable machine-readable code"})
    detail = fields.String(required=True, metadata={"description": "What was wrong, for people"})


class StatusSchema(Schema):
    status = fields.String(required=True)


class IndexSchema(Schema):
    service = fields.String(required=True)
    model = fields.Dict(required=True, metadata={"description": "name, version and labels"})
    links = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


_JSON_FIELDS: dict[type, type[fields.Field]] = {str: fields.String, dict: fields.Dict}

#: model.json's required keys (``function.model_info.REQUIRED``); the rest of the file is shown as it is.
ModelSchema = Schema.from_dict(
    {
        key: fields.List(fields.String(), required=True) if kind is list else _JSON_FIELDS[kind](required=True)
        for key, kind in REQUIRED.items()
    },
    name="ModelSchema",
)


# --- the Open Inference Protocol (KServe V2) ---------------------------------------------------

_tensor_name = {"description": "The tensor's name"}
_shape = {"description": "The tensor's shape; the product of its dimensions is the number of elements"}
_data = {
    "description": "The elements in row-major order, flat or nested; absent when "
    "parameters.binary_data_size says the tensor follows the JSON as binary data"
}


class V2ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "What was wrong"})


class V2ServerMetadataSchema(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class V2LiveSchema(Schema):
    live = fields.Boolean(required=True)


class V2ReadySchema(Schema):
    ready = fields.Boolean(required=True)


class V2ModelReadySchema(Schema):
    name = fields.String(required=True)
    ready = fields.Boolean(required=True)


class V2MetadataTensorSchema(Schema):
    name = fields.String(required=True)
    datatype = fields.String(required=True)
    shape = fields.List(fields.Integer(), required=True, metadata={"description": "-1 for a variable dimension"})


class V2ModelMetadataSchema(Schema):
    name = fields.String(required=True)
    versions = fields.List(fields.String())
    platform = fields.String(required=True)
    inputs = fields.List(fields.Nested(V2MetadataTensorSchema), required=True)
    outputs = fields.List(fields.Nested(V2MetadataTensorSchema), required=True)
    parameters = fields.Dict(metadata={"description": "labels: the order of the probabilities' columns"})


class V2InferInputSchema(Schema):
    name = fields.String(required=True, validate=validate.OneOf([INPUT]), metadata=_tensor_name)
    shape = fields.List(fields.Integer(), required=True, validate=validate.Length(min=1, max=2), metadata=_shape)
    datatype = fields.String(required=True, validate=validate.OneOf(["BYTES"]))
    parameters = fields.Dict(metadata={"description": "binary_data_size: the bytes of binary data, if binary"})
    data = fields.List(fields.Raw(), metadata=_data)


class V2RequestedOutputSchema(Schema):
    name = fields.String(required=True, validate=validate.OneOf(list(REQUESTABLE)), metadata=_tensor_name)
    parameters = fields.Dict(metadata={"description": "binary_data: true to receive it as binary data"})


class V2InferRequestSchema(Schema):
    id = fields.String(metadata={"description": "Echoed in the response"})
    parameters = fields.Dict(
        metadata={
            "description": "binary_data_output: true for binary outputs; explain: true adds the output "
            "'explanation' (BYTES [N], each a JSON explanation, as ?explain=true gives on /prediction)"
        }
    )
    inputs = fields.List(
        fields.Nested(V2InferInputSchema),
        required=True,
        validate=validate.Length(min=1, max=1),
        metadata={"example": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [_EXAMPLE]}]},
    )
    outputs = fields.List(
        fields.Nested(V2RequestedOutputSchema),
        validate=validate.Length(min=1, max=2),
        metadata={"description": "The outputs to return (all of them when absent)"},
    )


class V2InferOutputSchema(Schema):
    name = fields.String(required=True, metadata=_tensor_name)
    shape = fields.List(fields.Integer(), required=True, metadata=_shape)
    datatype = fields.String(required=True)
    parameters = fields.Dict()
    data = fields.List(fields.Raw(), metadata=_data)


class V2InferResponseSchema(Schema):
    model_name = fields.String(required=True)
    model_version = fields.String()
    id = fields.String()
    parameters = fields.Dict(
        metadata={"description": "Only when FEEDBACK_KEY is set: prediction_ids, one per text, for POST /feedback"}
    )
    outputs = fields.List(fields.Nested(V2InferOutputSchema), required=True)
