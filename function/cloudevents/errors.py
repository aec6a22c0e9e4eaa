"""Every way an HTTP request can fail to be a CloudEvent the service reads, each with its status.

Knative Eventing retries 5xx, 404, 408, 409 and 429 (``SelectiveRetry`` in knative/eventing
``pkg/kncloudevents/retries.go``) and nothing else. None of these can succeed when sent again, so
each is a 400 or a 415, never one of those.
"""

from __future__ import annotations

from function.errors import ServiceError


class EventError(ServiceError):
    """The request is not a CloudEvent this service reads."""

    status = 400
    error = "invalid_event"


class NotACloudEvent(EventError):
    """No ``ce-`` header and no ``application/cloudevents+json`` body."""

    error = "not_a_cloudevent"


class BadAttribute(EventError):
    """An attribute is missing or wrong; ``attribute`` names it."""

    def __init__(self, attribute: str, detail: str) -> None:
        super().__init__(detail)
        self.attribute = attribute


class MissingAttribute(BadAttribute):
    error = "missing_attribute"


class InvalidAttribute(BadAttribute):
    """A value of the wrong type or form, a name CloudEvents forbids, or an attribute given twice."""

    error = "invalid_attribute"


class UnsupportedSpecVersion(EventError):
    error = "unsupported_specversion"


class UnsupportedEventType(EventError):
    """A type the service does not read (the Trigger's filter should not let it through)."""

    error = "unsupported_event_type"


class MalformedEvent(EventError):
    """A structured event that is not a JSON object, or whose ``data`` / ``data_base64`` is wrong."""

    error = "malformed_event"


class InvalidData(EventError):
    """Data declared JSON that is not JSON."""

    error = "invalid_data"


class UnsupportedEventFormat(EventError):
    """A structured event in a format other than JSON (``application/cloudevents+<format>``)."""

    status = 415
    error = "unsupported_event_format"


class BatchedModeUnsupported(EventError):
    """``application/cloudevents-batch+json``: Knative never sends it; one event a request."""

    status = 415
    error = "batched_mode_unsupported"


class UnsupportedDataType(EventError):
    """Data that is not declared JSON (``Content-Type`` / ``datacontenttype``)."""

    status = 415
    error = "unsupported_data_type"
