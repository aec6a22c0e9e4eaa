"""Marshmallow schemas that document ``POST /``: a CloudEvent in structured mode, and its answer.

The patterns are the service's own rules (``function.cloudevents``), ended by ``(?![\\s\\S])``: the
end of the value in every regex dialect, where ``$`` lets Python's ``re`` match before a final
newline. What JSON Schema cannot say (an extension attribute's name, ``data`` or ``data_base64``
but not both, ``{"texts": [...]}`` in place of ``{"text": ...}``) the operation's text says.
"""

from __future__ import annotations

from marshmallow import fields, validate

from function.api.schemas import EXAMPLE, ExplanationSchema, Open
from function.api.validation import TEXT_PATTERN
from function.cloudevents.event import ABSOLUTE_URI, FORBIDDEN, SPEC_VERSION, TIMESTAMP
from function.cloudevents.event_types import CLASSIFIED, CLASSIFY
from function.cloudevents.http_binding import JSON_MEDIA_TYPE

_END = r"(?![\s\S])"
_STRING = validate.Regexp(f"^[^{FORBIDDEN}]+{_END}")


def _attribute(description: str, *, required: bool = False, pattern: validate.Regexp = _STRING) -> fields.String:
    if required:
        return fields.String(required=True, validate=pattern, metadata={"description": description})
    return fields.String(allow_none=True, validate=pattern, metadata={"description": description})


class ClassifyDataSchema(Open):
    text = fields.String(
        required=True,
        validate=validate.Regexp(TEXT_PATTERN),
        metadata={
            "description": 'The text to classify; or, in its place, "texts": [...] as POST /predictions takes',
            "example": EXAMPLE,
        },
    )
    scores = fields.Boolean(metadata={"description": "Also answer each label's probability (false when absent)"})
    explain = fields.Boolean(metadata={"description": "Also answer why the text got its label (false when absent)"})


class _Context(Open):
    specversion = fields.String(required=True, validate=validate.OneOf([SPEC_VERSION]))
    id = _attribute("Unique within its source: a redelivery keeps it", required=True)
    source = _attribute("Who sent it (a URI-reference)", required=True)
    subject = _attribute("What it is about")
    time = _attribute("When it happened (RFC 3339)", pattern=validate.Regexp(f"^{TIMESTAMP}{_END}"))
    dataschema = _attribute(
        "The schema of its data (an absolute URI)", pattern=validate.Regexp(f"^{ABSOLUTE_URI}{_END}")
    )
    datacontenttype = _attribute("JSON: */json or */*+json", pattern=validate.Regexp(f"^{JSON_MEDIA_TYPE}{_END}"))


class ClassifyEventSchema(_Context):
    type = fields.String(required=True, validate=validate.OneOf([CLASSIFY]))
    data = fields.Nested(ClassifyDataSchema, required=True)


class ClassifiedDataSchema(Open):
    """What POST /prediction answers, or POST /predictions for ``{"texts": [...]}``."""

    label = fields.String(metadata={"description": "The label (an event with one text)"})
    labels = fields.List(
        fields.String(), metadata={"description": "One label per text, in order (an event with texts)"}
    )
    prediction_id = fields.String(metadata={"description": "Only when FEEDBACK_KEY is set, as /prediction's"})
    prediction_ids = fields.List(
        fields.String(), metadata={"description": "Only when FEEDBACK_KEY is set, one per text"}
    )
    scores = fields.Raw(
        metadata={"description": "Only with scores: each label's probability; an array of them for texts"}
    )
    explanation = fields.Nested(ExplanationSchema, metadata={"description": "Only with explain (one text)"})
    explanations = fields.List(
        fields.Nested(ExplanationSchema), metadata={"description": "Only with explain, one per text"}
    )


class ClassifiedEventSchema(Open):
    specversion = fields.String(required=True, validate=validate.OneOf([SPEC_VERSION]))
    id = fields.String(required=True, metadata={"description": "The same for every delivery of the event answered"})
    source = fields.String(required=True, metadata={"description": "EVENT_SOURCE"})
    type = fields.String(required=True, validate=validate.OneOf([CLASSIFIED]))
    subject = fields.String(required=True, metadata={"description": "The event answered's subject, else its id"})
    time = fields.String(required=True, metadata={"description": "When the answer was made (RFC 3339, UTC)"})
    datacontenttype = fields.String(required=True, validate=validate.OneOf(["application/json"]))
    data = fields.Nested(ClassifiedDataSchema, required=True)
    # The extensions naming the event answered (function.cloudevents.event_types.REPLY_EXTENSIONS).
    causationid = fields.String(required=True, metadata={"description": "The id of the event answered"})
    causationsource = fields.String(required=True, metadata={"description": "The source of the event answered"})
    correlationid = fields.String(
        required=True, metadata={"description": "The event answered's correlationid extension, else its id"}
    )
    modelversion = fields.String(required=True, metadata={"description": "The version of the model that answered"})
