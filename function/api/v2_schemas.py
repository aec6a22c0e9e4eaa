"""Marshmallow schemas that document the Open Inference Protocol's routes (KServe V2, REST).

The infer request's schema says what ``function.api.open_inference`` accepts, as far as JSON
Schema can say it (a test feeds both the same bodies); what it cannot say (that ``shape`` and
``data`` agree, that no output is named twice) is in the operation's description.
"""

from __future__ import annotations

from marshmallow import fields, validate

from function.api.open_inference import REQUESTABLE
from function.api.schemas import DEFAULT_MAX_BATCH_ITEMS, EXAMPLE, Open
from function.api.validation import TEXT_PATTERN
from function.model_info import INPUT

_tensor_name = {"description": "The tensor's name"}
_shape = {"description": "The tensor's shape; the product of its dimensions is the number of elements"}


class V2ErrorSchema(Open):
    error = fields.String(required=True, metadata={"description": "What was wrong"})


class V2ServerMetadataSchema(Open):
    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class V2LiveSchema(Open):
    live = fields.Boolean(required=True)


class V2ReadySchema(Open):
    ready = fields.Boolean(required=True)


class V2ModelReadySchema(Open):
    name = fields.String(required=True)
    ready = fields.Boolean(required=True)


class V2MetadataTensorSchema(Open):
    name = fields.String(required=True)
    datatype = fields.String(required=True)
    shape = fields.List(fields.Integer(), required=True, metadata={"description": "-1 for a variable dimension"})


class V2ModelMetadataSchema(Open):
    name = fields.String(required=True)
    versions = fields.List(fields.String())
    platform = fields.String(required=True)
    inputs = fields.List(fields.Nested(V2MetadataTensorSchema), required=True)
    outputs = fields.List(fields.Nested(V2MetadataTensorSchema), required=True)
    parameters = fields.Dict(metadata={"description": "labels: the order of the probabilities' columns"})


class V2InferInputSchema(Open):
    name = fields.String(required=True, validate=validate.OneOf([INPUT]), metadata=_tensor_name)
    shape = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=DEFAULT_MAX_BATCH_ITEMS)),
        required=True,
        validate=validate.Length(min=1, max=2),
        metadata={"description": "[N] or [N, 1]: N texts, as many as data holds"},
    )
    datatype = fields.String(required=True, validate=validate.OneOf(["BYTES"]))
    parameters = fields.Dict(
        allow_none=True,
        metadata={
            "description": "binary_data_size: the bytes of this tensor's binary data, which then follows the "
            "JSON (Content-Type application/octet-stream) in place of data"
        },
    )
    data = fields.List(
        fields.String(validate=validate.Regexp(TEXT_PATTERN)),
        required=True,
        validate=validate.Length(min=1, max=DEFAULT_MAX_BATCH_ITEMS),
        metadata={
            "description": f"The texts, 1 to MAX_BATCH_ITEMS (default {DEFAULT_MAX_BATCH_ITEMS}), each not empty "
            "or only whitespace; flat, or nested one level ([[text], [text]] for shape [N, 1])"
        },
    )


def _flags(description: str, **flags: str) -> fields.Dict:
    """A ``parameters`` object (or null) with these boolean flags, and any other member, ignored."""
    properties = {name: {"type": "boolean", "description": text} for name, text in flags.items()}
    return fields.Dict(allow_none=True, metadata={"description": description, "properties": properties})


class V2RequestedOutputSchema(Open):
    name = fields.String(required=True, validate=validate.OneOf(list(REQUESTABLE)), metadata=_tensor_name)
    parameters = _flags(
        "How this output comes back",
        binary_data="true: this output follows the JSON as binary data (default: binary_data_output)",
    )


class V2InferRequestSchema(Open):
    id = fields.String(allow_none=True, metadata={"description": "Echoed in the response"})
    parameters = _flags(
        "The request's parameters",
        binary_data_output="true: every output as binary data",
        explain="true adds the output 'explanation' (BYTES [N], each a JSON explanation, as ?explain=true "
        "gives on /prediction)",
    )
    inputs = fields.List(
        fields.Nested(V2InferInputSchema),
        required=True,
        validate=validate.Length(min=1, max=1),
        metadata={"example": [{"name": INPUT, "datatype": "BYTES", "shape": [1], "data": [EXAMPLE]}]},
    )
    outputs = fields.List(
        fields.Nested(V2RequestedOutputSchema),
        allow_none=True,
        validate=validate.Length(min=1, max=len(REQUESTABLE)),
        metadata={"description": "The outputs to return, each named once (label and probabilities when absent)"},
    )


class V2InferOutputSchema(Open):
    name = fields.String(required=True, metadata=_tensor_name)
    shape = fields.List(fields.Integer(), required=True, metadata=_shape)
    datatype = fields.String(required=True)
    parameters = fields.Dict(metadata={"description": "binary_data_size: the bytes of its binary data, if binary"})
    data = fields.List(
        fields.Raw(),
        metadata={"description": "The elements in row-major order; absent when the tensor is binary data"},
    )


class V2InferResponseSchema(Open):
    model_name = fields.String(required=True)
    model_version = fields.String()
    id = fields.String()
    parameters = fields.Dict(
        metadata={"description": "Only when FEEDBACK_KEY is set: prediction_ids, one per text, for POST /feedback"}
    )
    outputs = fields.List(fields.Nested(V2InferOutputSchema), required=True)
