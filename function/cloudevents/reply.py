"""The event that answers an event: of the answering type, with an id of its own that a redelivery
gets again on any pod, the service's source, the time it was made, the subject of the event it
answers, and extensions naming that event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from function.cloudevents.errors import UnsupportedEventType
from function.cloudevents.event import CloudEvent, EncodedJson
from function.cloudevents.event_types import (
    CAUSATION_ID,
    CAUSATION_SOURCE,
    CORRELATION_ID,
    MODEL_VERSION,
    REPLY_TYPES,
    TYPE_PREFIX,
)
from function.jsonio import JSON_CONTENT_TYPE, dumps

#: Reply ids are name-based UUIDs (RFC 9562, version 5) in the namespace of the types' domain.
REPLY_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, ".".join(reversed(TYPE_PREFIX.split("."))))


def reply_type(event: CloudEvent) -> str:
    """The type of the answer to ``event``; ``UnsupportedEventType`` for a type the service does not read."""
    answer = REPLY_TYPES.get(event.type)
    if answer is None:
        raise UnsupportedEventType(f"events of type {event.type!r} are not read here; send {', '.join(REPLY_TYPES)}")
    return answer


def reply_id(event: CloudEvent) -> str:
    """The same for every delivery of ``event`` (same source and id), on any pod of any revision, so
    that whoever reads the replies can drop a redelivery's as a duplicate."""
    # NOTE: the pair encoded as JSON, so that no two pairs give the same name.
    return str(uuid.uuid5(REPLY_ID_NAMESPACE, dumps([event.source, event.id]).decode()))


def reply_to(
    event: CloudEvent, data: EncodedJson, *, source: str, model_version: str, now: datetime | None = None
) -> CloudEvent:
    """The answer to ``event``, its ``data`` already encoded as JSON; ``now``: its time (default: now)."""
    correlation = event.extensions.get(CORRELATION_ID) or event.id
    return CloudEvent(
        id=reply_id(event),
        source=source,
        type=reply_type(event),
        subject=event.subject if event.subject is not None else event.id,
        time=timestamp(now or datetime.now(UTC)),
        datacontenttype=JSON_CONTENT_TYPE,
        extensions={
            CAUSATION_ID: event.id,
            CAUSATION_SOURCE: event.source,
            CORRELATION_ID: correlation,
            MODEL_VERSION: model_version,
        },
        data=data,
    )


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, to the millisecond: ``2026-07-01T12:00:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
