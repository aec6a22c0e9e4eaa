"""The CloudEvents HTTP protocol binding: an HTTP message (headers and body) to an event, and back.

The content mode is chosen by ``Content-Type`` alone, as the binding says: ``application/cloudevents+json``
is structured, ``application/cloudevents-batch+json`` batched (refused), anything else binary, an
absent ``Content-Type`` included (binary data is then taken as JSON, as the SDK sends it).
Only JSON data is read: the service classifies ``{"text": ...}`` and ``{"texts": [...]}``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from function.cloudevents.errors import (
    BatchedModeUnsupported,
    InvalidAttribute,
    InvalidData,
    MalformedEvent,
    NotACloudEvent,
    UnsupportedDataType,
    UnsupportedEventFormat,
)
from function.cloudevents.event import FORBIDDEN, CloudEvent, ContentMode, EncodedJson, event_from_attributes
from function.jsonio import JSON_CONTENT_TYPE, Fragment, JSONDecodeError, dumps, loads

STRUCTURED_JSON = "application/cloudevents+json"
_STRUCTURED = "application/cloudevents"
_BATCHED = "application/cloudevents-batch"
HEADER_PREFIX = "ce-"
# Percent-encoded in header values (spec 3.1.3.2): space, '"', '%' and all but printable ASCII.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_NEEDS_ENCODING = re.compile(f"[^{re.escape(_SAFE)}]")
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_event(headers: Mapping[str, str], body: bytes) -> tuple[CloudEvent, ContentMode]:
    """The event an HTTP request carries, and its content mode.

    ``headers``: any mapping (aiohttp's ``CIMultiDictProxy`` too); names are case-insensitive, and
    an attribute given twice is refused. Raises the ``EventError`` that says what is wrong.
    """
    content_type: str | None = None
    raw: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value.strip() or None
        elif lowered.startswith(HEADER_PREFIX):
            attribute = lowered[len(HEADER_PREFIX) :]
            if attribute in raw:
                raise InvalidAttribute(attribute, f"the header {name} is sent twice")
            raw[attribute] = value
    media = media_type(content_type)
    if media.startswith(_BATCHED):
        raise BatchedModeUnsupported(f"batched content mode ({media}) is not read: send one event a request")
    if media.startswith(_STRUCTURED):
        if media != STRUCTURED_JSON:
            raise UnsupportedEventFormat(f"event format {media}: only {STRUCTURED_JSON} is read")
        return _structured(body), ContentMode.STRUCTURED
    return _binary(content_type, raw, body), ContentMode.BINARY


def encode_event(event: CloudEvent, mode: ContentMode) -> tuple[dict[str, str], bytes]:
    """The headers and body of an HTTP message carrying ``event`` (JSON data) in ``mode``."""
    if mode is ContentMode.STRUCTURED:
        document: dict[str, Any] = event.attributes()
        if event.data is not None:
            document["data"] = Fragment(event.data.json) if isinstance(event.data, EncodedJson) else event.data
        return {"Content-Type": STRUCTURED_JSON}, dumps(document)
    headers = {"Content-Type": event.datacontenttype} if event.datacontenttype is not None else {}
    for name, value in event.attributes().items():
        if name != "datacontenttype":  # Content-Type carries it
            headers[HEADER_PREFIX + name] = quote(value, safe=_SAFE) if _NEEDS_ENCODING.search(value) else value
    if event.data is None:
        return headers, b""
    return headers, event.data.json if isinstance(event.data, EncodedJson) else dumps(event.data)


def media_type(content_type: str | None) -> str:
    """``type/subtype`` in lower case, parameters left out; empty when there is no Content-Type."""
    return "" if content_type is None else content_type.split(";", 1)[0].strip().lower()


#: What ``is_json(media_type(value))`` accepts, as a pattern (for the API documents): a type, ``/``,
#: a subtype ``json`` or ``...+json`` in any case, parameters after ``;``; no control characters.
JSON_MEDIA_TYPE = f"[^/;{FORBIDDEN}]*/([^;{FORBIDDEN}]*\\+)?[Jj][Ss][Oo][Nn][ ]*(;[^{FORBIDDEN}]*)?"


def is_json(media: str) -> bool:
    """Whether data of this media type is JSON: ``*/json`` or ``*/*+json``."""
    subtype = media.partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


def header_value(name: str, value: str) -> str:
    """An attribute's value from its header: a quoted string unquoted, then percent-decoded once."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidAttribute(name, f"the header ce-{name} is not percent-encoded UTF-8") from None


def _binary(content_type: str | None, raw: Mapping[str, str], body: bytes) -> CloudEvent:
    if not raw:
        raise NotACloudEvent(
            "not a CloudEvent: send the ce-specversion, ce-id, ce-source and ce-type headers "
            f"(binary mode) or a Content-Type: {STRUCTURED_JSON} body (structured mode)"
        )
    attributes = {name: header_value(name, value) for name, value in raw.items()}
    # NOTE: a sender must not send ce-datacontenttype; Content-Type is the data's type, so it wins.
    attributes.pop("datacontenttype", None)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    event = event_from_attributes(attributes)
    if content_type is not None and not is_json(media_type(content_type)):
        raise UnsupportedDataType(f"data of type {content_type}: send JSON, Content-Type: {JSON_CONTENT_TYPE}")
    if not body:
        return event
    return event._replace(data=_json_data(body))


def _structured(body: bytes) -> CloudEvent:
    try:
        document = loads(body)
    except JSONDecodeError as exc:
        raise MalformedEvent(f"the structured event is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedEvent("the structured event must be a JSON object")
    if "data" in document and "data_base64" in document:
        raise MalformedEvent("the structured event has both data and data_base64")
    has_data = "data" in document
    data, encoded = document.pop("data", None), document.pop("data_base64", None)
    event = event_from_attributes(document)
    declared = event.datacontenttype
    if encoded is not None:  # binary data: JSON only if declared so (never assumed)
        if declared is None or not is_json(media_type(declared)):
            raise UnsupportedDataType(f"data_base64 of type {declared or 'unknown'}: send JSON data")
        return event._replace(data=_json_data(_base64(encoded)))
    if has_data and declared is not None and not is_json(media_type(declared)):
        raise UnsupportedDataType(f"data of type {declared}: send JSON data")
    return event._replace(data=data)


def _base64(encoded: Any) -> bytes:
    if not isinstance(encoded, str):
        raise MalformedEvent("data_base64 must be a string")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise MalformedEvent("data_base64 is not base64") from None


def _json_data(raw: bytes) -> Any:
    try:
        return loads(raw)
    except JSONDecodeError as exc:
        raise InvalidData(f"the event's data is not JSON: {exc}") from None
