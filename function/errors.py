"""One error base carrying its HTTP status; every answer that is not a success is one of these.

Raised anywhere, rendered in one place (``function.api.middleware``), which also adds the HTTP
headers an error asks for: ``Retry-After`` for ``retry``, ``Connection: close`` for ``close``.
On the Open Inference Protocol's routes (``/v2``) the same errors take that protocol's shape:
``{"error": <detail>}``, and 400 instead of 405 for an invalid request.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with an HTTP status, a stable machine-readable code and a safe detail."""

    status: int = 500
    error: str = "internal_error"
    #: The client may retry after the service's ``RETRY_AFTER_SECONDS`` (sent as ``Retry-After``).
    retry: bool = False

    def __init__(self, detail: str = "", *, close: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        #: Answer with ``Connection: close``: the body was not read, or the service is stopping.
        self.close = close


class InvalidInput(ServiceError):
    """The body is not a valid request; 405 as the challenge's contract prescribes."""

    status = 405
    error = "validation_error"

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        #: A small fixed vocabulary (metrics label): see ``VALIDATION_REASONS``.
        self.reason = reason


VALIDATION_REASONS = (
    "invalid_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "empty_text",
    "batch_size",
    "bad_query",
    "bad_tensor",
)


class NotFound(ServiceError):
    """A model name or version that this service does not serve."""

    status = 404
    error = "not_found"


class Rejected(ServiceError):
    """Refused before validation, whatever the body holds; its ``error`` is the ``reason`` of
    ``textclf_rejected_requests_total``."""


class PayloadTooLarge(Rejected):
    status = 413
    error = "payload_too_large"


class RequestTimeout(Rejected):
    """The body did not arrive in time (a slow or stalled client)."""

    status = 408
    error = "request_timeout"


class ClientDisconnected(Rejected):
    """The client closed the connection before its answer; nobody reads it.

    499 is nginx's "client closed request": not the service's fault, so not a 5xx in metrics.
    """

    status = 499
    error = "client_closed_request"


class UnsupportedMediaType(Rejected):
    status = 415
    error = "unsupported_media_type"


class Overloaded(Rejected):
    """Too much work queued, or too many request bytes in memory: shed load now."""

    status = 503
    error = "overloaded"
    retry = True


class ModelUnavailable(ServiceError):
    """The model cannot answer right now (starting, replacing a worker, shutting down)."""

    status = 503
    error = "model_unavailable"


class StartupError(RuntimeError):
    """The service cannot start as configured: a setting, a file or the port is wrong."""


class ExpectationFailed(Rejected):
    """An ``Expect`` header other than ``100-continue``."""

    status = 417
    error = "expectation_failed"


class FeedbackError(ServiceError):
    """Feedback that is not counted; its ``error`` is the ``reason`` of ``textclf_feedback_rejected_total``."""


class FeedbackDisabled(FeedbackError):
    """No ``FEEDBACK_KEY``: no prediction ids are issued, so none can be fed back."""

    status = 404
    error = "feedback_disabled"


class MalformedPredictionId(FeedbackError):
    status = 400
    error = "malformed_id"


class ForgedPredictionId(FeedbackError):
    """Not signed with this service's key: made up, or altered after it was issued."""

    status = 403
    error = "bad_signature"


class ExpiredPredictionId(FeedbackError):
    status = 410
    error = "expired"


class UnknownLabel(FeedbackError):
    status = 422
    error = "unknown_label"


class DuplicateFeedback(FeedbackError):
    """This pod has already counted feedback on the id."""

    status = 409
    error = "duplicate"


#: Every way feedback is refused, each a subclass of ``FeedbackError``.
FEEDBACK_REJECTIONS = tuple(kind.error for kind in FeedbackError.__subclasses__())
#: Every way a request is refused before validation, each a subclass of ``Rejected``.
REJECTION_REASONS = tuple(kind.error for kind in Rejected.__subclasses__())
