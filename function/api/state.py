"""The HTTP layer's typed app state: its keys, and the body budget that one of them holds.

The service's own state (settings, classifier, metrics, lifecycle) is ``function.state``'s; what
only the HTTP layer reads lives here, so that ``function.state`` names nothing of ``function.api``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from function.api.access_log import AccessLogger
from function.api.headers import RequestIds
from function.cloudevents.redelivery import RecentReplies
from function.inference.classifier import Timings

if TYPE_CHECKING:  # imported only when tracing is on (function.app)
    from function.tracing.tracer import Tracer


class BodyBudget:
    """Request-body bytes held in memory at once: being read, or waiting for their answer."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def hold(self, size: int) -> bool:
        """Take ``size`` bytes of the budget; False (and nothing taken) if they are not there."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size


BODIES = web.AppKey("bodies", BodyBudget)
#: None with ACCESS_LOG=false.
ACCESS_LOG: web.AppKey[AccessLogger | None] = web.AppKey("access_log")
REQUEST_IDS = web.AppKey("request_ids", RequestIds)
#: URL path -> the committed API document served there.
OPENAPI = web.AppKey("openapi", dict[str, bytes])
#: Which model and revision answer: headers added to every answer, and fields of every access line.
SERVED_BY = web.AppKey("served_by", dict[str, str])
#: The replies given to the last events (``POST /``), for their redeliveries.
EVENT_REPLIES = web.AppKey("event_replies", RecentReplies)
#: Exports each request's spans; None when tracing is off (no ``OTEL_EXPORTER_OTLP_ENDPOINT``).
TRACER: web.AppKey[Tracer | None] = web.AppKey("tracer")
#: A request's stages, for its spans: set by the middleware only for a request whose spans are kept.
TIMINGS = web.RequestKey("timings", Timings)
