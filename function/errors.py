"""One error base carrying its HTTP status; every answer that is not a success is one of these."""

from __future__ import annotations


class ServiceError(Exception):
    """An error with an HTTP status, a stable machine-readable code and a safe detail."""

    status: int = 500
    error: str = "internal_error"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


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
)


class PayloadTooLarge(ServiceError):
    status = 413
    error = "payload_too_large"


class RequestTimeout(ServiceError):
    """The body did not arrive in time (a slow or stalled client)."""

    status = 408
    error = "request_timeout"


class ClientDisconnected(ServiceError):
    """The client closed the connection before its body arrived; nobody reads the answer.

    499 is nginx's "client closed request": not the service's fault, so not a 5xx in metrics.
    """

    status = 499
    error = "client_closed_request"


class UnsupportedMediaType(ServiceError):
    status = 415
    error = "unsupported_media_type"


class Overloaded(ServiceError):
    """Too much work queued: shed load now rather than let latency grow."""

    status = 503
    error = "overloaded"


class ModelUnavailable(ServiceError):
    """The model cannot answer right now (starting, restarting a worker, shutting down)."""

    status = 503
    error = "model_unavailable"
