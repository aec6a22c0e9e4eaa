"""The reply to an event, read back by the CloudEvents SDK, and the replies remembered so that a
redelivered event gets the same answer, within their bounds of entries and bytes."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from function.cloudevents.errors import UnsupportedEventType
from function.cloudevents.event import ATTRIBUTE_NAME, MAX_EXTENSION_NAME, CloudEvent, ContentMode, EncodedJson
from function.cloudevents.event_types import CLASSIFIED, CLASSIFY, REPLY_EXTENSIONS
from function.cloudevents.http_binding import encode_event, parse_event
from function.cloudevents.redelivery import RecentReplies
from function.cloudevents.reply import reply_id, reply_to, reply_type
from function.jsonio import dumps
from tests.helpers import ROOT

NOW = datetime(2026, 7, 1, 12, 0, 0, 123456, tzinfo=UTC)
ANSWER = {"label": "hockey", "prediction_id": "2.0.0~hockey~6a0b1c2d~1f2e3d4c5b6a0001~" + "0" * 64}


def request(
    event_id: str = "post-17", source: str = "/tests/sender", subject: str | None = None, correlationid: str = ""
) -> CloudEvent:
    extensions = {"correlationid": correlationid} if correlationid else {}
    return CloudEvent(id=event_id, source=source, type=CLASSIFY, subject=subject, extensions=extensions)


def reply(event: CloudEvent, answer: object = ANSWER, now: datetime = NOW) -> CloudEvent:
    return reply_to(event, EncodedJson(dumps(answer)), source="/newsgroups-classifier", model_version="2.0.0", now=now)


@pytest.mark.parametrize("mode", list(ContentMode))
def test_the_reply_is_read_by_the_sdk_with_its_own_id_source_time_subject_and_links(mode: ContentMode) -> None:
    event = request(subject="sci.space/17", correlationid="txn-1")
    headers, body = encode_event(reply(event), mode)
    read = from_http_event(HTTPMessage({name.lower(): value for name, value in headers.items()}, body))
    assert read.get_type() == CLASSIFIED
    assert read.get_id() == reply_id(event) != event.id
    assert (read.get_source(), read.get_subject()) == ("/newsgroups-classifier", "sci.space/17")
    assert read.get_time() == NOW.replace(microsecond=123000)
    assert {name: read.get_extension(name) for name in REPLY_EXTENSIONS} == {
        "causationid": "post-17",
        "causationsource": "/tests/sender",
        "correlationid": "txn-1",
        "modelversion": "2.0.0",
    }
    assert read.get_data() == ANSWER
    # NOTE: the SDK makes an id up when there is none: the message itself must carry one.
    assert (headers.get("ce-id") or parse_event(headers, body)[0].id) == reply_id(event)


def test_a_binary_reply_carries_its_attributes_as_headers_and_its_data_as_the_body() -> None:
    headers, body = encode_event(reply(request()), ContentMode.BINARY)
    assert headers["Content-Type"] == "application/json"
    assert "ce-datacontenttype" not in headers
    assert {"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time"} <= set(headers)
    assert body == dumps(ANSWER)


def test_a_structured_reply_is_one_json_event() -> None:
    headers, body = encode_event(reply(request()), ContentMode.STRUCTURED)
    assert headers == {"Content-Type": "application/cloudevents+json"}
    event, mode = parse_event(headers, body)
    assert (mode, event.type, event.data) == (ContentMode.STRUCTURED, CLASSIFIED, ANSWER)


def test_without_a_subject_or_a_correlation_id_the_reply_names_the_events_id() -> None:
    answer = reply(request())
    assert (answer.subject, answer.extensions["correlationid"]) == ("post-17", "post-17")


def test_the_reply_id_is_the_same_for_every_delivery_of_an_event_and_only_for_it() -> None:
    first, again = reply(request()), reply(request(subject="other"), {"label": "space"}, datetime.now(UTC))
    assert first.id == again.id
    assert len({reply_id(request(i, s)) for i, s in [("a", "/s"), ("b", "/s"), ("a", "/t"), ("/s", "a")]}) == 4
    assert reply_id(request("b\nc", "a")) != reply_id(request("c", "a\nb"))


def test_the_reply_id_is_the_same_in_any_process() -> None:
    """Another pod: another process, another hash seed."""
    code = (
        "from function.cloudevents.event import CloudEvent\nfrom function.cloudevents.reply import reply_id\n"
        "print(reply_id(CloudEvent(id='post-17', source='/tests/sender', type='t')))"
    )
    env = {"PYTHONHASHSEED": "12345", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.stdout.strip() == reply_id(request()), result.stderr


def test_an_event_of_another_type_is_refused_for_good() -> None:
    with pytest.raises(UnsupportedEventType) as raised:
        reply_type(CloudEvent(id="1", source="/s", type=CLASSIFIED))  # a reply sent back must not loop
    assert raised.value.status == 400


def test_the_reply_extension_names_are_valid_and_short() -> None:
    assert all(ATTRIBUTE_NAME.fullmatch(name) and len(name) <= MAX_EXTENSION_NAME for name in REPLY_EXTENSIONS)


def test_a_redelivery_gets_the_reply_its_first_delivery_got() -> None:
    replies = RecentReplies(max_entries=10, max_bytes=1 << 20)
    event = request()
    first = replies.keep(event.source, event.id, reply(event))
    assert replies.get(event.source, event.id) == first
    later = replies.keep(event.source, event.id, reply(event, {"label": "space"}, datetime.now(UTC)))
    assert later == first, "two deliveries in flight at once: the first answer kept is given to both"
    assert replies.get(event.source, "post-18") is None
    assert replies.get("/another/sender", event.id) is None


def test_the_oldest_reply_is_forgotten_beyond_the_entries() -> None:
    replies = RecentReplies(max_entries=3, max_bytes=1 << 20)
    for n in range(4):
        replies.keep("/s", f"{n}", reply(request(f"{n}", "/s")))
    assert len(replies) == 3
    assert replies.get("/s", "0") is None
    assert all(replies.get("/s", f"{n}") is not None for n in (1, 2, 3))


def test_the_oldest_replies_are_forgotten_beyond_the_bytes() -> None:
    one = RecentReplies(max_entries=100, max_bytes=1 << 20)
    one.keep("/s", "0", reply(request("0", "/s")))
    replies = RecentReplies(max_entries=100, max_bytes=int(one.held_bytes * 3.5))
    for n in range(10):
        replies.keep("/s", f"{n}", reply(request(f"{n}", "/s")))
        assert replies.held_bytes <= replies.max_bytes
    assert len(replies) == 3
    assert [replies.get("/s", f"{n}") is not None for n in range(10)] == [False] * 7 + [True] * 3


def test_a_reply_larger_than_the_bytes_is_given_but_not_remembered() -> None:
    replies = RecentReplies(max_entries=100, max_bytes=2000)
    event = request()
    big = replies.keep(event.source, event.id, reply(event, {"label": "hockey", "padding": "x" * 2000}))
    assert big.data.json == dumps({"label": "hockey", "padding": "x" * 2000})
    assert (len(replies), replies.held_bytes) == (0, 0)


@pytest.mark.parametrize(("entries", "size"), [(0, 1 << 20), (100, 0)])
def test_zero_entries_or_bytes_remember_nothing(entries: int, size: int) -> None:
    replies = RecentReplies(max_entries=entries, max_bytes=size)
    replies.keep("/s", "1", reply(request("1", "/s")))
    assert replies.get("/s", "1") is None


@pytest.mark.parametrize("answer", [ANSWER, {"label": "space", "scores": {f"label{n}": 0.1234567 for n in range(6)}}])
def test_the_bytes_counted_bound_the_memory_the_replies_hold(answer: dict[str, object]) -> None:
    """What tracemalloc sees the remembered replies hold (the events' strings, the data, the
    cache's own structures) stays within the bytes counted, and close to them."""
    count = 5000
    replies = RecentReplies(max_entries=count, max_bytes=1 << 30)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(count):
            headers = {"ce-specversion": "1.0", "ce-id": f"post-{n:08d}", "ce-source": f"/senders/{n % 7}"}
            event, _ = parse_event({**headers, "ce-type": CLASSIFY, "ce-subject": f"sci.space/{n}"}, b"")
            replies.keep(event.source, event.id, reply(event, answer, datetime.now(UTC)))
            del event
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.85 * replies.held_bytes <= held <= replies.held_bytes
