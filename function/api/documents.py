"""The API documents as the service serves them: the committed files, read once, answered byte for byte.

``python -m function.api.openapi`` generates them (``make openapi``); the service never does.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from function.api.paths import OPENAPI_PATH, SWAGGER_PATH
from function.api.state import OPENAPI
from function.errors import StartupError

_ROOT = Path(__file__).resolve().parents[2]
#: The committed documents, beside ``function/`` in a checkout and in the image, by URL path.
DOCUMENTS = {SWAGGER_PATH: _ROOT / "openapi.json", OPENAPI_PATH: _ROOT / "openapi3.json"}


def committed_documents() -> dict[str, bytes]:
    """The committed documents by the URL path they are served at."""
    documents = {}
    for url, path in DOCUMENTS.items():
        try:
            documents[url] = path.read_bytes()
        except OSError as exc:
            raise StartupError(f"cannot read the API document {path}: {exc}") from None
    return documents


async def document(request: web.Request) -> web.Response:
    """The committed document at the request's path."""
    return web.Response(body=request.app[OPENAPI][request.path], content_type="application/json")
