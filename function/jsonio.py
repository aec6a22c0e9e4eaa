"""The one JSON codec of the service (orjson); nothing else is imported, so workers may use it."""

from __future__ import annotations

from typing import Any

import orjson

JSON_CONTENT_TYPE = "application/json"

loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError
#: JSON already encoded, written into a document as it is.
Fragment = orjson.Fragment


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def dumps_pretty(obj: Any) -> bytes:
    """Indented, newline-terminated: for documents people read and commit (openapi.json)."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
