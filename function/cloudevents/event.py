"""A CloudEvent (specversion 1.0) and the rules its context attributes follow, in any content mode."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from function.cloudevents.errors import InvalidAttribute, MissingAttribute, UnsupportedSpecVersion

SPEC_VERSION = "1.0"
REQUIRED = ("specversion", "id", "source", "type")
OPTIONAL = ("subject", "time", "datacontenttype", "dataschema")
#: CloudEvents attribute names: lower-case ASCII letters and digits; ``data`` is reserved.
ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
MAX_EXTENSION_NAME = 20  # a SHOULD of the specification: enforced on the service's own names only
#: What no attribute value may hold: control characters (C0, DEL, C1), as a character class's body.
#: (No lone surrogate gets this far: the JSON decoder and the strict percent-decoding refuse them.)
FORBIDDEN = r"\x00-\x1f\x7f-\x9f"
#: RFC 3339 ``date-time``, ASCII digits only.
TIMESTAMP = (
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
#: An absolute URI: a scheme, then no space (and no control character).
ABSOLUTE_URI = f"[A-Za-z][A-Za-z0-9+.-]*:[^ {FORBIDDEN}]*"
_FORBIDDEN_CHARACTERS = re.compile(f"[{FORBIDDEN}]")
_TIMESTAMP = re.compile(TIMESTAMP)
_ABSOLUTE_URI = re.compile(ABSOLUTE_URI)
_INTEGER = range(-(2**31), 2**31)


class ContentMode(enum.Enum):
    """How an event travels over HTTP: attributes in ``ce-`` headers and the data as the body, or
    the whole event as one JSON document."""

    BINARY = "binary"
    STRUCTURED = "structured"


class EncodedJson(NamedTuple):
    """Data already encoded as JSON (a reply's, encoded once): written out as it is."""

    json: bytes


#: No extension attributes (read-only: shared by every event without any).
NO_EXTENSIONS: Mapping[str, str] = MappingProxyType({})


class CloudEvent(NamedTuple):
    """The context attributes (strings in their canonical form; unset ones None) and the data: the
    JSON value decoded, or ``EncodedJson``.

    NOTE: a NamedTuple, as the classifier's results are: built several times a request, a frozen
    dataclass costs 1.7 µs more each time.
    """

    id: str
    source: str
    type: str
    specversion: str = SPEC_VERSION
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    extensions: Mapping[str, str] = NO_EXTENSIONS
    data: Any = None

    def attributes(self) -> dict[str, str]:
        """Every context attribute that is set, extensions last."""
        core = {name: getattr(self, name) for name in (*REQUIRED, *OPTIONAL)}
        return {name: value for name, value in core.items() if value is not None} | dict(self.extensions)


def event_from_attributes(attributes: Mapping[str, Any], data: Any = None) -> CloudEvent:
    """The event these attributes describe, each checked; a null value is an unset attribute.

    Values are strings (binary mode), or JSON values (structured mode: an extension may also be a
    boolean or an integer, kept in its canonical string form).
    """
    given = {name: value for name, value in attributes.items() if value is not None}
    if "specversion" not in given:
        raise MissingAttribute("specversion", "the event has no specversion (ce-specversion); send 1.0")
    version = _string("specversion", given.pop("specversion"))
    if version != SPEC_VERSION:
        raise UnsupportedSpecVersion(f"specversion {version!r}: only CloudEvents {SPEC_VERSION} is read")
    for name in REQUIRED[1:]:
        if name not in given:
            raise MissingAttribute(name, f"the event has no {name} (ce-{name})")
    core = {name: _string(name, given.pop(name)) for name in (*REQUIRED[1:], *OPTIONAL) if name in given}
    if "time" in core and not _TIMESTAMP.fullmatch(core["time"]):
        raise InvalidAttribute("time", f"time {core['time']!r} is not an RFC 3339 timestamp")
    if "dataschema" in core and not _ABSOLUTE_URI.fullmatch(core["dataschema"]):
        raise InvalidAttribute("dataschema", f"dataschema {core['dataschema']!r} is not an absolute URI")
    extensions = {_extension_name(name): _extension_value(name, value) for name, value in given.items()}
    return CloudEvent(**core, extensions=extensions, data=data)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidAttribute(name, f"{name} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidAttribute(name, f"{name} must not be empty")
    if _FORBIDDEN_CHARACTERS.search(value):
        raise InvalidAttribute(name, f"{name} holds a control character, which CloudEvents forbids")
    return value


def _extension_name(name: str) -> str:
    if not ATTRIBUTE_NAME.fullmatch(name) or name == "data":
        raise InvalidAttribute(name, f"{name!r} is not an attribute name: a-z and 0-9 only, and not 'data'")
    return name


def _extension_value(name: str, value: Any) -> str:
    """The canonical string of a String, Boolean or Integer value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value not in _INTEGER:
            raise InvalidAttribute(name, f"{name} is an integer outside the 32-bit range CloudEvents allows")
        return str(value)
    return _string(name, value)
