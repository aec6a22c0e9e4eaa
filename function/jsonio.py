"""The one JSON codec of the service (orjson)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

JSON_CONTENT_TYPE = "application/json"

loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def dumps_pretty(obj: Any) -> bytes:
    """Indented, newline-terminated: for documents people read and commit (openapi.json)."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(obj), status=status, headers=headers, content_type=JSON_CONTENT_TYPE)
