"""Answers the headers alone decide: a declared length over MAX_BODY_BYTES is 413 at once, and
``Expect: 100-continue`` is refused before ``100 Continue`` invites a body that would be refused."""

from __future__ import annotations

import pytest

from bench.http1 import exchange, request
from bench.servers import ServerProcess
from tests.e2e.helpers import without_prediction_id

pytestmark = pytest.mark.e2e

TOO_LONG = str(64 * 1024 * 1024)


async def test_a_declared_length_over_the_limit_is_413_at_once_without_the_body(live: ServerProcess) -> None:
    result = await exchange(live.url, request("POST", "/prediction", b"", {"Content-Length": TOO_LONG}))
    assert result.statuses == [413], result
    assert result.responses[0].json()["error"] == "payload_too_large"
    assert result.responses[0].header("Connection") == "close"
    assert result.seconds < 1.0, "the answer waited for a body it did not need"


@pytest.mark.parametrize(
    ("headers", "content_type", "status", "error"),
    [
        ({"Content-Length": TOO_LONG}, "application/json", 413, "payload_too_large"),
        ({"Content-Length": "20"}, "text/plain", 415, "unsupported_media_type"),
    ],
    ids=["too-long", "not-json"],
)
async def test_expect_100_continue_is_refused_before_the_body_is_invited(
    live: ServerProcess, headers: dict[str, str], content_type: str, status: int, error: str
) -> None:
    head = request("POST", "/prediction", b"", {"Expect": "100-continue", **headers}, content_type=content_type)
    result = await exchange(live.url, head, give_up_after=3)
    assert [r.status for r in result.responses] == [status], "100 Continue was sent first" + repr(result)
    assert result.responses[0].json()["error"] == error
    assert result.responses[0].header("Connection") == "close"


async def test_expect_100_continue_for_an_acceptable_request_invites_the_body(live: ServerProcess) -> None:
    body = b'{"text": "NASA launched the shuttle into orbit"}'
    head = request("POST", "/prediction", b"", {"Expect": "100-continue", "Content-Length": str(len(body))})
    result = await exchange(live.url, [head, body], pause=0.2)
    assert [r.status for r in result.responses] == [100, 200], result
    assert without_prediction_id(result.responses[1].json()) == {"label": "space"}


async def test_an_expectation_other_than_100_continue_is_417(live: ServerProcess) -> None:
    head = request("POST", "/prediction", b"", {"Expect": "the-moon", "Content-Length": "20"})
    result = await exchange(live.url, head, give_up_after=3)
    assert result.statuses == [417], result
    assert result.responses[0].json()["error"] == "expectation_failed"
