"""Reading a request body within its limits, answering from the headers alone wherever they suffice.

In order: the media type (415), the declared length (413), the drain's cut (503) and the
budget of body bytes in memory (503 + ``Retry-After``) are decided before a byte of the body is
read, and before ``100 Continue`` invites it; then the body must arrive within
``BODY_TIMEOUT_SECONDS`` (408). Answers given without reading the body close the connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion11

from function.api.state import BODIES, TIMINGS, BodyBudget
from function.errors import (
    ClientDisconnected,
    ExpectationFailed,
    InvalidInput,
    ModelUnavailable,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from function.jsonio import JSON_CONTENT_TYPE, JSONDecodeError, loads
from function.settings import Settings
from function.state import LIFECYCLE, SETTINGS, Lifecycle


async def defer_continue(request: web.Request) -> None:
    """The routes' ``Expect`` handler: send nothing yet; ``json_body`` decides after its checks."""


class json_body:  # noqa: N801 - used as a function: `async with json_body(request) as body`
    """The body decoded as JSON, its bytes counted against the budget until the block ends.

    NOTE: a class, not a generator under ``contextlib.asynccontextmanager``, which costs a few
    microseconds more on every request.
    """

    __slots__ = ("_budget", "_request", "_size")
    #: The media types accepted; the first is the one a 415 asks for (None: any, decided later).
    MEDIA_TYPES: tuple[str, ...] | None = (JSON_CONTENT_TYPE,)

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._budget: BodyBudget | None = None
        self._size = 0

    async def __aenter__(self) -> Any:
        request = self._request
        app = request.app
        settings, lifecycle, budget = app[SETTINGS], app[LIFECYCLE], app[BODIES]
        expect = request.headers.get("Expect")
        unread = expect is not None or not request.content.is_eof()
        if self.MEDIA_TYPES is not None and request.content_type not in self.MEDIA_TYPES:
            detail = (
                f"the body must be JSON: send the header 'Content-Type: {self.MEDIA_TYPES[0]}' "
                f"(this request's Content-Type is {request.content_type})"
            )
            raise UnsupportedMediaType(detail, close=unread)
        if expect is not None and (expect.lower() != "100-continue" or request.version != HttpVersion11):
            raise ExpectationFailed(f"only 'Expect: 100-continue' is understood, not {expect!r}", close=True)
        declared = request.content_length
        if declared is not None and declared > settings.max_body_bytes:
            raise PayloadTooLarge(_too_large(settings.max_body_bytes), close=True)
        if lifecycle.cut and unread:
            raise ModelUnavailable("the service is stopping; send the request again", close=True)
        size = settings.max_body_bytes if declared is None else declared
        if not budget.hold(size):
            raise Overloaded("too many request bytes are in memory; retry shortly", close=unread)
        self._budget, self._size = budget, size
        timings = request.get(TIMINGS)
        try:
            if timings is not None:
                timings.read_from = time.perf_counter()
            if expect is not None:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0  # the 100 is not part of the answer's size
            body = self._decode(await _read(request, settings, lifecycle))
            if timings is not None:
                timings.read_to = time.perf_counter()
            return body
        except BaseException:  # no `async with` block will run, so no __aexit__ either
            await self.__aexit__()
            raise

    async def __aexit__(self, *_: object) -> None:
        if self._budget is not None:
            self._budget.release(self._size)
            self._budget = None

    def _decode(self, body: bytes) -> Any:
        """The body as the handler gets it (``function.api.v2.tensor_body`` splits off binary tensors
        first; ``function.api.events.event_body`` leaves it to the CloudEvents binding)."""
        return _json(body)


def _too_large(limit: int) -> str:
    return f"the body is larger than the {limit} bytes this service accepts (MAX_BODY_BYTES)"


def _json(body: bytes) -> Any:
    try:
        return loads(body)
    except JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", reason="invalid_json") from None


async def _read(request: web.Request, settings: Settings, lifecycle: Lifecycle) -> bytes:
    """The whole body; 408 if it takes over BODY_TIMEOUT_SECONDS (503 while draining), 503 at the drain's cut."""
    within = settings.body_timeout_seconds
    if request.content.is_eof():  # already buffered: nothing to wait for
        return await request.read()
    task = asyncio.current_task()
    assert task is not None
    lifecycle.uploads.add(task)
    try:
        async with asyncio.timeout(within):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(_too_large(settings.max_body_bytes)) from None
    except TimeoutError:
        if lifecycle.draining:  # the client must go elsewhere: 503 says so, 408 would not
            raise ModelUnavailable("the service is stopping; send the request again", close=True) from None
        raise RequestTimeout(f"the body did not arrive within {within:g} s") from None
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not match
        raise InvalidInput(f"the body could not be decoded: {exc}", reason="invalid_json") from None
    except ConnectionResetError:
        raise ClientDisconnected("the client closed the connection before sending its body") from None
    except asyncio.CancelledError:
        if not lifecycle.cut:  # the client left (or the test ended): not the drain's doing
            raise
        task.uncancel()  # the drain's cut cancelled it (an upload cancelled otherwise now has no reader)
        raise ModelUnavailable("the service is stopping; send the request again", close=True) from None
    finally:
        lifecycle.uploads.discard(task)
