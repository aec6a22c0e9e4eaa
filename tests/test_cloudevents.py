"""CloudEvents over HTTP, read as the CloudEvents SDK sends them in either content mode, and every
way a request can fail to be an event the service reads, with a status Knative does not retry."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, TypeVar

import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from multidict import CIMultiDict, CIMultiDictProxy

from function.cloudevents import errors
from function.cloudevents.classify import ClassifyOptions, classify_options
from function.cloudevents.event import CloudEvent, ContentMode, event_from_attributes
from function.cloudevents.event_types import CLASSIFY
from function.cloudevents.http_binding import encode_event, header_value, is_json, media_type, parse_event
from function.errors import InvalidInput
from tests.helpers import ROOT

SUBJECT = 'Euro € 😀 "q" 100%'
#: Statuses Knative Eventing redelivers after (knative/eventing pkg/kncloudevents/retries.go).
RETRIED = {404, 408, 409, 429}
SDK_MODES = {ContentMode.BINARY: to_binary_event, ContentMode.STRUCTURED: to_structured_event}


def sdk_event(data: Any = None, **attributes: Any) -> SdkEvent:
    given = {"type": CLASSIFY, "source": "/tests/sender", "id": "post-17", "datacontenttype": "application/json"}
    return SdkEvent({**given, **attributes}, {"text": "The goalie stopped the puck"} if data is None else data)


def binary_headers(**changes: str | None) -> dict[str, str]:
    headers = dict(to_binary_event(sdk_event()).headers)
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    return headers


DROP = object()


def structured(**changes: Any) -> bytes:
    """The SDK's structured event, with members changed, or left out where ``DROP``."""
    document = json.loads(to_structured_event(sdk_event()).body)
    document.update(changes)
    return json.dumps({name: value for name, value in document.items() if value is not DROP}).encode()


STRUCTURED_HEADERS = {"Content-Type": "application/cloudevents+json"}


@pytest.mark.parametrize("mode", list(ContentMode))
def test_an_event_sent_by_the_sdk_is_read_with_every_attribute(mode: ContentMode) -> None:
    sent = sdk_event(subject=SUBJECT, correlationid="txn-1", dataschema="https://example.com/text.json")
    message = SDK_MODES[mode](sent)
    event, read_mode = parse_event(message.headers, message.body)
    assert read_mode is mode
    assert (event.id, event.source, event.type, event.specversion) == ("post-17", "/tests/sender", CLASSIFY, "1.0")
    assert (event.subject, event.datacontenttype, event.dataschema) == (
        SUBJECT,
        "application/json",
        "https://example.com/text.json",
    )
    assert event.time == json.loads(to_structured_event(sent).body)["time"]  # the string sent
    assert event.extensions == {"correlationid": "txn-1"}
    assert event.data == {"text": "The goalie stopped the puck"}


def test_both_modes_read_the_same_event() -> None:
    sent = sdk_event(subject=SUBJECT, priority="high")
    binary, structured_ = (parse_event(convert(sent).headers, convert(sent).body)[0] for convert in SDK_MODES.values())
    assert binary == structured_


def test_binary_data_without_a_content_type_is_read_as_json() -> None:
    """The SDK sends no Content-Type for an event without datacontenttype."""
    message = to_binary_event(SdkEvent({"type": CLASSIFY, "source": "/s"}, {"texts": ["a", "b"]}))
    assert "content-type" not in {name.lower() for name in message.headers}
    event, mode = parse_event(message.headers, message.body)
    assert (mode, event.datacontenttype, event.data) == (ContentMode.BINARY, None, {"texts": ["a", "b"]})


def test_header_names_are_case_insensitive_and_json_media_types_have_parameters_or_suffixes() -> None:
    headers = {"CE-ID": "1", "Ce-Source": "/s", "ce-SPECVERSION": "1.0", "ce-type": CLASSIFY}
    event, _ = parse_event({**headers, "Content-Type": "application/vnd.post+json; charset=utf-8"}, b'{"text": "x"}')
    assert (event.id, event.source, event.data) == ("1", "/s", {"text": "x"})
    event, mode = parse_event({"content-type": "Application/CloudEvents+JSON; charset=UTF-8"}, structured())
    assert (mode, event.id) == (ContentMode.STRUCTURED, "post-17")


def test_content_type_is_the_binary_datas_type_whatever_ce_datacontenttype_says() -> None:
    """The binding forbids the header; a sender that sends it anyway is not refused for it."""
    event, _ = parse_event(binary_headers(content_type=None, ce_datacontenttype="text/plain"), b'{"text": "x"}')
    assert (event.datacontenttype, event.data) == (None, {"text": "x"})


def test_header_values_are_percent_decoded_once_and_quoted_strings_unquoted() -> None:
    assert header_value("subject", "Euro%20%e2%82%ac%20%F0%9F%98%80") == "Euro € 😀"  # lower-case hex too
    assert header_value("subject", "%41%2541") == "A%41"  # once: unnecessary encoding kept apart
    assert header_value("subject", '"a \\"quoted\\" value"') == 'a "quoted" value'  # older senders
    assert header_value("subject", "a+b") == "a+b"  # not form encoding


def test_reply_headers_are_percent_encoded_as_the_binding_says() -> None:
    reply = CloudEvent(id="r", source="/s", type="t", subject='Euro € 😀 "q" 100% a+b/c', data={"label": "space"})
    headers, body = encode_event(reply, ContentMode.BINARY)
    assert headers["ce-subject"] == "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22q%22%20100%25%20a+b/c"
    assert all(value.isascii() and " " not in value for value in headers.values())
    assert body == b'{"label":"space"}'


def test_every_character_crosses_a_header_and_only_printable_ascii_is_sent() -> None:
    characters = [chr(c) for c in [*range(0x20, 0x7F), *range(0xA0, 0x800), 0x20AC, 0xFFFD, 0x1F600]]
    value = "".join(characters)
    headers, _ = encode_event(CloudEvent(id="r", source="/s", type="t", subject=value), ContentMode.BINARY)
    sent = headers["ce-subject"]
    assert all("!" <= c <= "~" and c != '"' for c in sent)
    assert header_value("subject", sent) == value
    for c in characters:  # each alone: encoded exactly when the binding says so
        alone, _ = encode_event(CloudEvent(id="r", source="/s", type="t", subject=c), ContentMode.BINARY)
        assert (alone["ce-subject"] != c) == (c in ' "%' or not "!" <= c <= "~"), repr(c)


def test_structured_events_follow_the_json_format() -> None:
    """Null is unset; Boolean and Integer extensions keep their canonical strings; data_base64 of
    declared JSON is the data."""
    encoded = base64.b64encode(b'{"text": "x"}').decode()
    body = structured(subject=None, urgent=True, attempt=-3, data=DROP, data_base64=encoded)
    event, _ = parse_event(STRUCTURED_HEADERS, body)
    assert (event.subject, event.extensions, event.data) == (None, {"urgent": "true", "attempt": "-3"}, {"text": "x"})


Refused = TypeVar("Refused", bound=errors.EventError)


def expect(kind: type[Refused], headers: Mapping[str, str], body: bytes) -> Refused:
    with pytest.raises(kind) as raised:
        parse_event(headers, body)
    return raised.value


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type"])
def test_a_missing_required_attribute_is_named(attribute: str) -> None:
    error = expect(errors.MissingAttribute, binary_headers(**{f"ce_{attribute}": None}), b"{}")
    assert (error.status, error.attribute) == (400, attribute)
    document = json.loads(structured())
    del document[attribute]
    assert expect(errors.MissingAttribute, STRUCTURED_HEADERS, json.dumps(document).encode()).attribute == attribute


@pytest.mark.parametrize(
    ("headers", "attribute"),
    [
        (binary_headers(ce_id=""), "id"),
        (binary_headers(ce_time="yesterday"), "time"),
        (binary_headers(ce_time="2026-13-01T00:00:00Z"), "time"),
        (binary_headers(ce_dataschema="text.json"), "dataschema"),
        (binary_headers(ce_subject="two%0Alines"), "subject"),
        (binary_headers(ce_subject="%C0%A0"), "subject"),  # an overlong UTF-8 encoding
        (binary_headers(ce_my_extension="x"), "my-extension"),
        (binary_headers(ce_data="x"), "data"),
    ],
)
def test_an_invalid_binary_attribute_is_named(headers: dict[str, str], attribute: str) -> None:
    error = expect(errors.InvalidAttribute, headers, b"{}")
    assert (error.status, error.attribute) == (400, attribute)


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        ({"source": 7}, "source"),
        ({"type": ["a"]}, "type"),
        ({"Priority": "high"}, "Priority"),
        ({"attempt": 2**31}, "attempt"),
        ({"ratio": 0.5}, "ratio"),
        ({"nested": {"a": 1}}, "nested"),
    ],
)
def test_an_invalid_structured_attribute_is_named(changes: dict[str, Any], attribute: str) -> None:
    assert expect(errors.InvalidAttribute, STRUCTURED_HEADERS, structured(**changes)).attribute == attribute


def test_an_attribute_sent_twice_is_refused() -> None:
    headers = CIMultiDict(binary_headers())  # as aiohttp holds a request's headers
    headers.add("CE-ID", "again")
    assert expect(errors.InvalidAttribute, CIMultiDictProxy(headers), b"{}").attribute == "id"


REFUSED: list[tuple[str, type[errors.EventError], dict[str, str], bytes]] = [
    ("plain JSON", errors.NotACloudEvent, {"Content-Type": "application/json"}, b'{"text": "x"}'),
    ("specversion 0.3", errors.UnsupportedSpecVersion, binary_headers(ce_specversion="0.3"), b"{}"),
    ("structured, not JSON", errors.MalformedEvent, STRUCTURED_HEADERS, b"{"),
    ("structured, not an object", errors.MalformedEvent, STRUCTURED_HEADERS, b"[]"),
    ("data and data_base64", errors.MalformedEvent, STRUCTURED_HEADERS, structured(data_base64="e30=")),
    ("data_base64 not base64", errors.MalformedEvent, STRUCTURED_HEADERS, structured(data=DROP, data_base64="%%")),
    ("binary data not JSON", errors.InvalidData, binary_headers(), b"{text"),
    ("base64 data not JSON", errors.InvalidData, STRUCTURED_HEADERS, structured(data=DROP, data_base64="e3Q=")),
    ("text/plain data", errors.UnsupportedDataType, binary_headers(content_type="text/plain"), b"puck"),
    ("structured text/plain", errors.UnsupportedDataType, STRUCTURED_HEADERS, structured(datacontenttype="text/plain")),
    (
        "data_base64 of no type",
        errors.UnsupportedDataType,
        STRUCTURED_HEADERS,
        structured(datacontenttype=DROP, data=DROP, data_base64="e30="),
    ),
    ("Avro format", errors.UnsupportedEventFormat, {"Content-Type": "application/cloudevents+avro"}, b"\0"),
    ("batched mode", errors.BatchedModeUnsupported, {"Content-Type": "application/cloudevents-batch+json"}, b"[]"),
]


@pytest.mark.parametrize(("kind", "headers", "body"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_request_that_is_not_an_event_the_service_reads_is_refused_for_good(
    kind: type[errors.EventError], headers: dict[str, str], body: bytes
) -> None:
    error = expect(kind, headers, body)
    assert error.status in (400, 415), "a status Knative does not retry: sent again, it fails again"
    assert error.detail


def test_every_event_error_has_a_code_of_its_own_a_status_knative_does_not_retry_and_a_test() -> None:
    kinds = [kind for kind in vars(errors).values() if isinstance(kind, type) and issubclass(kind, errors.EventError)]
    assert all(kind.status < 500 and kind.status not in RETRIED for kind in kinds)
    codes = [kind.error for kind in kinds if not kind.__subclasses__()]  # each way an event is refused
    assert len(set(codes)) == len(codes)
    tested = {kind.error for _, kind, _, _ in REFUSED} | {"missing_attribute", "invalid_attribute"}
    assert set(codes) == tested | {"unsupported_event_type"}  # tests/test_cloudevent_replies.py


def test_the_data_asks_for_one_text_or_several_with_scores_and_explanations() -> None:
    assert classify_options({"text": "x"}) == ClassifyOptions(many=False, scores=False, explain=False)
    assert classify_options({"texts": ["x"], "explain": True}) == ClassifyOptions(many=True, scores=False, explain=True)
    assert classify_options({"text": "x", "texts": ["y"], "scores": True}).many is False  # as /prediction reads it


@pytest.mark.parametrize("data", [None, ["x"], "x", {"text": "x", "explain": "yes"}, {"text": "x", "scores": 1}])
def test_data_that_is_not_an_object_or_has_a_non_boolean_option_is_invalid_input(data: Any) -> None:
    with pytest.raises(InvalidInput):
        classify_options(data)


def test_the_service_imports_no_cloudevents_sdk() -> None:
    code = (
        "import sys, function.app, function.cloudevents.http_binding, function.cloudevents.reply, "
        "function.cloudevents.redelivery, function.cloudevents.classify\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cloudevents'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _published(attribute: str) -> re.Pattern[str]:
    document = json.loads((ROOT / "openapi.json").read_text())
    return re.compile(document["definitions"]["ClassifyEvent"]["properties"][attribute]["pattern"])


@pytest.mark.parametrize(
    ("attribute", "values"),
    [
        ("id", ["post-17", "a b", "€ 😀", "", "x\n", "\x7f", "a\x85b", " ", "%ff"]),
        (
            "time",
            [
                "2026-07-01T12:00:00Z",
                "2026-07-01t12:00:00.123+02:00",
                "2026-13-01T00:00:00Z",
                "2026-07-01",
                "2026-07-01T12:00:00Z\n",
                "٢٠٢٦-07-01T12:00:00Z",
                "2026-07-01T24:00:00Z",
            ],
        ),
        ("dataschema", ["https://example.com/s.json", "urn:x", "a:", "no-scheme", "a: b", "1a:x", "a:\u00a0"]),
        (
            "datacontenttype",
            [
                "application/json",
                "Application/JSON; charset=utf-8",
                "text/x+json",
                "/json",
                " a/json ",
                "a/b/x+json",
                "a/jsonx",
                "a;/json",
                "text/plain",
                "json",
                "a/ json",
            ],
        ),
    ],
)
def test_the_published_patterns_accept_exactly_the_values_the_service_reads(attribute: str, values: list[str]) -> None:
    """The same values through the pattern ``openapi.json`` publishes and through the service's check."""
    pattern = _published(attribute)
    for value in values:
        attributes = {"specversion": "1.0", "id": "1", "source": "/s", "type": CLASSIFY, attribute: value}
        try:
            event = event_from_attributes(attributes)
            read = attribute != "datacontenttype" or is_json(media_type(event.datacontenttype))
        except errors.EventError:
            read = False
        assert (pattern.search(value) is not None) == read, repr(value)
