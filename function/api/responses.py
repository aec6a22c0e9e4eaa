"""JSON answers: a success, and the one shape every error takes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from function.jsonio import JSON_CONTENT_TYPE, dumps


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(obj), status=status, headers=headers, content_type=JSON_CONTENT_TYPE)


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": <stable code>, "detail": <for people>}``: nothing internal, never a traceback."""
    return json_response({"error": error, "detail": detail}, status=status, headers=headers)
