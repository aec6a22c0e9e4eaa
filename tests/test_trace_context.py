"""W3C Trace Context: a valid ``traceparent`` makes each request a span of the caller's trace."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from aiohttp.test_utils import TestClient

from bench.servers import ServerProcess

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
BODY = {"text": "the shuttle reached orbit"}


async def test_the_answer_continues_the_callers_trace_with_a_span_of_its_own(client: TestClient) -> None:
    first = await client.post("/prediction", json=BODY, headers={"traceparent": PARENT})
    second = await client.post("/prediction", json=BODY, headers={"traceparent": PARENT})
    spans = []
    for response in (first, second):
        assert response.status == 200
        version, trace, span, flags = response.headers["traceparent"].split("-")
        assert (version, trace, flags) == ("00", TRACE, "01")
        assert re.fullmatch("[0-9a-f]{16}", span)
        assert span not in ("00f067aa0ba902b7", "0" * 16)
        assert response.headers["X-Request-ID"] == f"{TRACE}-{span}"  # derived: no X-Request-ID was sent
        spans.append(span)
    assert spans[0] != spans[1]


async def test_a_given_request_id_is_kept_beside_the_trace(client: TestClient) -> None:
    response = await client.post("/prediction", json=BODY, headers={"traceparent": PARENT, "X-Request-ID": "abc-1"})
    assert response.headers["X-Request-ID"] == "abc-1"
    assert response.headers["traceparent"].split("-")[1] == TRACE


async def test_errors_carry_the_trace_too(client: TestClient) -> None:
    response = await client.post("/prediction", json={"text": ""}, headers={"traceparent": PARENT})
    assert response.status == 405
    assert response.headers["traceparent"].split("-")[1] == TRACE


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is forbidden
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper-case hex
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four fields
    ],
)
async def test_an_invalid_traceparent_is_ignored(client: TestClient, header: str) -> None:
    response = await client.post("/prediction", json=BODY, headers={"traceparent": header})
    assert response.status == 200
    assert "traceparent" not in response.headers
    assert re.fullmatch("[0-9a-f]{32}", response.headers["X-Request-ID"])


async def test_a_later_version_with_more_fields_is_understood(client: TestClient) -> None:
    response = await client.post(
        "/prediction", json=BODY, headers={"traceparent": f"01-{TRACE}-00f067aa0ba902b7-00-more"}
    )
    assert response.headers["traceparent"].startswith(f"00-{TRACE}-")
    assert response.headers["traceparent"].endswith("-00")


def test_the_access_line_names_the_trace() -> None:
    server = ServerProcess()
    server.wait_ready()
    request = urllib.request.Request(
        server.url + "/prediction",
        data=json.dumps(BODY).encode(),
        headers={"Content-Type": "application/json", "traceparent": PARENT},
    )
    with urllib.request.urlopen(request) as answer:
        request_id = answer.headers["X-Request-ID"]
    lines = [json.loads(line) for line in server.stop().splitlines() if line.startswith("{")]
    [access] = [entry for entry in lines if entry["logger"] == "function.access"]
    assert access["trace_id"] == TRACE
    assert access["request_id"] == request_id
