"""``POST /``: a CloudEvent asking for a classification in, the event answering it out.

Read within the limits every body is read in (``json_body``), in binary or structured mode; answered
in the request's mode, with the data ``/prediction`` or ``/predictions`` answers, from the same
batcher. A redelivery (same ``source`` and ``id``) gets the reply its first delivery got. Errors are
raised, never caught here; the middleware answers an invalid text 400 on this route.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema

from function.api.answers import many_answer, one_answer
from function.api.body import json_body
from function.api.documentation import BODY_ERRORS, documented_errors
from function.api.event_schemas import ClassifiedEventSchema, ClassifyEventSchema
from function.api.schemas import ErrorSchema
from function.api.state import EVENT_REPLIES, TIMINGS
from function.api.validation import prediction_text, prediction_texts
from function.cloudevents.classify import ClassifyOptions, classify_options
from function.cloudevents.event import EncodedJson
from function.cloudevents.event_types import CLASSIFIED, CLASSIFY
from function.cloudevents.http_binding import STRUCTURED_JSON, encode_event, parse_event
from function.cloudevents.reply import reply_to, reply_type
from function.inference.classifier import Timings
from function.jsonio import JSON_CONTENT_TYPE, dumps
from function.state import CLASSIFIER, MODEL_INFO, PREDICTION_IDS, SETTINGS


class event_body(json_body):  # noqa: N801 - used as a function, as json_body is
    """The body's bytes within the limits of every body; the CloudEvents binding reads them."""

    __slots__ = ()
    MEDIA_TYPES = None  # binary mode carries any Content-Type: the binding decides (415)

    def _decode(self, body: bytes) -> bytes:
        return body


_DESCRIPTION = f"""A CloudEvent 1.0 (HTTP binding) of type `{CLASSIFY}`, answered with one of type
`{CLASSIFIED}` in the same content mode. Knative Eventing's Triggers post here.

- **Structured mode** (documented here): `Content-Type: {STRUCTURED_JSON}`, the whole event as JSON.
- **Binary mode**: the attributes as `ce-` headers (`ce-specversion: 1.0`, `ce-id`, `ce-source`,
  `ce-type`, optional ones and extensions likewise), the data as the body with
  `Content-Type: {JSON_CONTENT_TYPE}` (absent: read as JSON). The answer comes the same way.

The data is what POST /prediction takes, `{{"text": "..."}}`, or what POST /predictions takes,
`{{"texts": ["...", ...]}}` (answered as POST /predictions does), with `"scores": true` and
`"explain": true` in it where those routes take them in the query. Besides what the schema says:
an extension attribute's name is lower-case ASCII letters and digits, its value a non-empty string,
a boolean or a 32-bit integer; `data_base64` (JSON data, declared so by `datacontenttype`) may
stand in place of `data`, never beside it. The answer's `id` is the same for every delivery of an
event (same `source` and `id`): a redelivery gets the very answer the first delivery got.

Statuses follow Knative Eventing's delivery rule (it retries 5xx, 404, 408, 409 and 429 only):
what sending again cannot change is a 400, 413 or 415."""

_ERRORS = {
    400: "Not a CloudEvent this service reads: an attribute missing or wrong (the detail names it), "
    "another type, data that is not JSON, or data that POST /prediction(s) would refuse",
    408: BODY_ERRORS[408],
    413: BODY_ERRORS[413],
    415: "A structured format other than JSON, batched mode, or data not declared JSON",
    417: BODY_ERRORS[417],
    503: "Overloaded (retry after the Retry-After header's seconds), not ready, or stopping",
    500: "Unexpected error (logged with the request id; no details are returned)",
}


@docs(
    tags=["events"],
    summary="Classify the text of a CloudEvent (Knative Eventing)",
    description=_DESCRIPTION,
    operationId="cloudevent",
    consumes=[STRUCTURED_JSON],
    produces=[STRUCTURED_JSON, JSON_CONTENT_TYPE],
)
@request_schema(ClassifyEventSchema, required=True)
@response_schema(ClassifiedEventSchema, 200, description="The event answering it (in binary mode: as ce- headers)")
@documented_errors(ErrorSchema, _ERRORS)
async def cloudevent(request: web.Request) -> web.Response:
    app = request.app
    replies, settings = app[EVENT_REPLIES], app[SETTINGS]
    async with event_body(request) as body:
        event, mode = parse_event(request.headers, body)
        reply_type(event)
        # NOTE: checked in full before a reply is looked up, so that an invalid event is refused
        # even under the source and id of one answered before.
        options = classify_options(event.data)
        if options.many:
            texts = prediction_texts(event.data, settings.max_batch_items)
        else:
            texts = [prediction_text(event.data)]
        reply = replies.get(event.source, event.id)
        if reply is None:
            timings = request.get(TIMINGS)
            data = await _classify(app, texts, options, timings)
            version = app[MODEL_INFO]["version"]
            answer = reply_to(event, EncodedJson(dumps(data)), source=settings.event_source, model_version=version)
            reply = replies.keep(event.source, event.id, answer)
    headers, payload = encode_event(reply, mode)
    return web.Response(body=payload, headers=headers)


async def _classify(
    app: web.Application, texts: list[str], options: ClassifyOptions, timings: Timings | None
) -> dict[str, object]:
    """What ``/predictions`` (``options.many``) or ``/prediction`` answers for ``texts``."""
    classifier, ids = app[CLASSIFIER], app[PREDICTION_IDS]
    results = await classifier.predict(texts, options.explain, timings)
    if options.many:
        return many_answer(results, classifier.labels, ids, scores=options.scores, explain=options.explain)
    return one_answer(results[0], classifier.labels, ids, scores=options.scores, explain=options.explain)
