"""``POST /`` of the real app (its worker pool, a server on loopback): CloudEvents sent by the
CloudEvents SDK in either content mode, answered in that mode with what ``/prediction`` and
``/predictions`` answer; a redelivery answered alike; every refusal with a status Knative treats
as its rule says (no retry for what cannot change, 408 and 503 retried)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from function.cloudevents.event_types import CLASSIFIED, CLASSIFY, DEFAULT_SOURCE, EVENTS_ROUTE
from function.settings import Settings
from tests.test_api import JSON, post

HOCKEY = "The goalie stopped the puck in overtime."
SPACE = "NASA launched the shuttle into orbit around the moon"
MODES = {"binary": to_binary_event, "structured": to_structured_event}
#: Statuses Knative Eventing redelivers after (knative/eventing pkg/kncloudevents/retries.go), and 5xx.
RETRIED = {404, 408, 409, 429}
KEY = "a feedback key of at least thirty-two bytes"


def event(data: Any, **attributes: Any) -> SdkEvent:
    given = {"type": CLASSIFY, "source": "/tests/feed", "id": "post-17", "datacontenttype": "application/json"}
    return SdkEvent({**given, **attributes}, data)


async def send(client: TestClient, sent: BaseCloudEvent, mode: str) -> ClientResponse:
    message = MODES[mode](sent)
    return await client.post("/", data=message.body, headers=message.headers)


async def reply_of(response: ClientResponse) -> BaseCloudEvent:
    assert response.status == 200, await response.text()
    return from_http_event(HTTPMessage(dict(response.headers), await response.read()))


@pytest.mark.parametrize("mode", MODES)
async def test_an_event_is_answered_in_its_mode_with_what_prediction_answers(client: TestClient, mode: str) -> None:
    response = await send(client, event({"text": HOCKEY, "scores": True}, subject="post 17 € 😀"), mode)
    reply = await reply_of(response)
    direct = await post(client, "/prediction?scores=true", {"text": HOCKEY})

    assert response.content_type == ("application/cloudevents+json" if mode == "structured" else "application/json")
    assert reply.get_data() == await direct.json()
    assert reply.get_data()["label"] == "hockey"
    assert (reply.get_type(), reply.get_source(), reply.get_subject()) == (CLASSIFIED, DEFAULT_SOURCE, "post 17 € 😀")
    assert reply.get_datacontenttype() == "application/json"
    assert reply.get_id() not in ("post-17", "")
    extensions = reply.get_extension
    assert (extensions("causationid"), extensions("causationsource"), extensions("correlationid")) == (
        "post-17",
        "/tests/feed",
        "post-17",
    )
    assert extensions("modelversion") == response.headers["X-Model-Version"]
    assert abs(datetime.now(UTC) - reply.get_time()) < timedelta(seconds=30)


@pytest.mark.parametrize("mode", MODES)
async def test_an_event_with_texts_is_answered_as_predictions_answers(client: TestClient, mode: str) -> None:
    data = {"texts": [SPACE, HOCKEY], "scores": True, "explain": True}
    reply = await reply_of(await send(client, event(data, correlationid="batch-3"), mode))
    direct = await post(client, "/predictions?scores=true&explain=true", {"texts": [SPACE, HOCKEY]})
    assert reply.get_data() == await direct.json()
    assert reply.get_data()["labels"] == ["space", "hockey"]
    assert reply.get_subject() == "post-17"  # no subject: the id of the event answered
    assert reply.get_extension("correlationid") == "batch-3"


@pytest.mark.parametrize("settings", [Settings(workers=1, feedback_key=KEY)])
async def test_a_redelivery_gets_the_very_reply_in_the_mode_it_comes_in(client: TestClient) -> None:
    first = await send(client, event({"text": SPACE}), "binary")
    again = await send(client, event({"text": SPACE}), "binary")
    assert await first.read() == await again.read()
    ce = {name: value for name, value in first.headers.items() if name.lower().startswith("ce-")}
    assert ce == {name: value for name, value in again.headers.items() if name.lower().startswith("ce-")}
    assert "ce-time" in ce
    assert "prediction_id" in json.loads(await first.read())

    structured = await reply_of(await send(client, event({"text": SPACE}), "structured"))
    binary = await reply_of(first)
    assert structured.get_id() == binary.get_id()
    assert structured.get_time() == binary.get_time()
    assert structured.get_data() == binary.get_data()  # the same prediction_id: feedback counts once


async def test_another_event_gets_another_reply_id(client: TestClient) -> None:
    one = await reply_of(await send(client, event({"text": SPACE}, id="a"), "binary"))
    other_id = await reply_of(await send(client, event({"text": SPACE}, id="b"), "binary"))
    other_source = await reply_of(await send(client, event({"text": SPACE}, id="a", source="/elsewhere"), "binary"))
    assert len({one.get_id(), other_id.get_id(), other_source.get_id()}) == 3


@pytest.mark.parametrize("settings", [Settings(workers=1, event_replies=0)])
async def test_without_remembered_replies_a_redelivery_is_classified_again_under_the_same_id(
    client: TestClient,
) -> None:
    first = await reply_of(await send(client, event({"text": SPACE}), "structured"))
    again = await reply_of(await send(client, event({"text": SPACE}), "structured"))
    assert (first.get_id(), first.get_data()) == (again.get_id(), again.get_data())


async def error_of(response: ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json"
    return response.status, (await response.json())["error"]


@pytest.mark.parametrize(
    ("data", "attributes", "mode", "error"),
    [
        ({"text": " "}, {}, "binary", "validation_error"),
        ({"texts": []}, {}, "structured", "validation_error"),
        ({"text": HOCKEY, "scores": "yes"}, {}, "binary", "validation_error"),
        (["a text"], {}, "structured", "validation_error"),
        ({"text": HOCKEY}, {"type": "org.example.other"}, "binary", "unsupported_event_type"),
        ({"text": HOCKEY}, {"specversion": "0.3"}, "structured", "unsupported_specversion"),
        ({"text": HOCKEY}, {"time": "yesterday"}, "binary", "invalid_attribute"),
        ({"text": HOCKEY}, {"Bad_Name": "x"}, "structured", "invalid_attribute"),
    ],
)
async def test_an_event_that_cannot_succeed_is_refused_400_which_knative_does_not_retry(
    client: TestClient, data: Any, attributes: dict[str, Any], mode: str, error: str
) -> None:
    message = MODES[mode](event(data))
    headers, body = dict(message.headers), message.body
    for name, value in attributes.items():
        if mode == "binary":
            headers[f"ce-{name}"] = value
        else:
            document = json.loads(body)
            document[name] = value
            body = json.dumps(document).encode()
    response = await client.post("/", data=body, headers=headers)
    assert await error_of(response) == (400, error)
    assert (await send(client, event({"text": HOCKEY}), mode)).status == 200  # it keeps serving


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (JSON, b'{"text": "a plain request, not an event"}', (400, "not_a_cloudevent")),
        ({"ce-specversion": "1.0", "ce-source": "/s", "ce-type": CLASSIFY}, b"{}", (400, "missing_attribute")),
        ({"Content-Type": "application/cloudevents+json"}, b"[1, 2]", (400, "malformed_event")),
        ({"Content-Type": "application/cloudevents+xml"}, b"<event/>", (415, "unsupported_event_format")),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"[]", (415, "batched_mode_unsupported")),
    ],
)
async def test_what_is_not_an_event_it_reads_is_refused_for_good(
    client: TestClient, headers: dict[str, str], body: bytes, expected: tuple[int, str]
) -> None:
    status, error = await error_of(await client.post("/", data=body, headers=headers))
    assert (status, error) == expected
    assert status not in RETRIED


async def test_data_not_declared_json_is_refused_415(client: TestClient) -> None:
    message = to_binary_event(event("just words", datacontenttype="text/plain"))
    response = await client.post("/", data=message.body, headers=message.headers)
    assert await error_of(response) == (415, "unsupported_data_type")


@pytest.mark.parametrize("settings", [Settings(workers=1, max_body_bytes=2048)])
async def test_an_event_over_the_body_limit_is_refused_413(client: TestClient) -> None:
    response = await send(client, event({"text": "words " * 500}), "structured")
    assert await error_of(response) == (413, "payload_too_large")


@pytest.mark.parametrize("settings", [Settings(workers=1, body_timeout_seconds=0.3)])
async def test_an_event_whose_body_stalls_is_answered_408_which_knative_retries(client: TestClient) -> None:
    message = to_binary_event(event({"text": HOCKEY}))

    async def stalling() -> AsyncIterator[bytes]:
        yield message.body[:5]
        await asyncio.sleep(2)
        yield message.body[5:]

    response = await client.post("/", data=stalling(), headers=message.headers)
    assert await error_of(response) == (408, "request_timeout")


@pytest.mark.parametrize("settings", [Settings(workers=1, max_pending=4)])
async def test_an_event_when_overloaded_is_answered_503_with_retry_after_and_not_remembered(
    client: TestClient,
) -> None:
    response = await send(client, event({"texts": [SPACE] * 5}), "binary")
    assert await error_of(response) == (503, "overloaded")
    assert response.headers["Retry-After"] == "1"
    later = await reply_of(await send(client, event({"texts": [SPACE] * 4}), "binary"))  # the same id, redelivered
    assert later.get_data()["labels"] == ["space"] * 4


async def test_events_have_a_route_of_their_own_in_the_metrics(client: TestClient) -> None:
    await send(client, event({"text": HOCKEY}), "binary")
    await send(client, event({"text": " "}, id="blank"), "structured")
    await client.get("/")
    exposition = await (await client.get("/metrics")).text()
    route = f'route="{EVENTS_ROUTE}"'
    assert f'textclf_http_requests_total{{code="200",method="POST",{route}}} 1.0' in exposition
    assert f'textclf_http_requests_total{{code="400",method="POST",{route}}} 1.0' in exposition
    assert 'textclf_http_requests_total{code="200",method="GET",route="/"} 1.0' in exposition
    assert f"textclf_http_request_duration_seconds_count{{{route}}} 2.0" in exposition
