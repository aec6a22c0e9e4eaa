"""The OpenAPI (Swagger 2.0) document.

``python -m function.api.openapi`` generates the document from the handlers' schemas with
aiohttp-apispec (``make openapi`` commits it as ``openapi.json``; ``make test`` checks that it
is current). The service serves the committed file, byte for byte, and never generates it.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_apispec import AiohttpApiSpec

from function.api.routes import ROUTES
from function.errors import StartupError
from function.jsonio import dumps_pretty

#: The committed document, beside ``function/`` in a checkout and in the image.
OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi.json"

TITLE = "Prediction API"
API_VERSION = "1.1.0"
DESCRIPTION = (
    "Classifies newsgroup posts into six topics. A compatible superset of the challenge's "
    "prediction API: POST /prediction is unchanged; the other operations are additions."
)


def generate_document() -> bytes:
    """The document as the handlers' schemas describe it (what ``openapi.json`` must hold)."""
    return dumps_pretty(_spec_dict())


def committed_document(path: Path = OPENAPI_FILE) -> bytes:
    """The committed ``openapi.json``, served at /openapi.json."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupError(f"cannot read the API document {path}: {exc}") from None


def _spec_dict() -> dict[str, Any]:
    # NOTE: aiohttp-apispec consumes each handler's __apispec__ while registering (and keys a
    # throwaway app with strings), so it works on copies, on an app that is never run.
    scratch = web.Application()
    for method, path, handler in ROUTES:
        if hasattr(handler, "__apispec__"):
            stand_in = _stand_in()
            setattr(stand_in, "__apispec__", copy.deepcopy(getattr(handler, "__apispec__")))  # noqa: B009, B010
            scratch.router.add_route(method, path, stand_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        AiohttpApiSpec(
            url=None,
            app=scratch,
            in_place=True,
            title=TITLE,
            version=API_VERSION,
            info={"description": DESCRIPTION},
            basePath="/",
            schemes=["http"],
        )
        return scratch["swagger_dict"]  # type: ignore[no-any-return]


def _stand_in() -> Handler:
    """A fresh handler object to carry a copy of a real handler's documentation."""

    async def never_called(request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    return never_called


if __name__ == "__main__":
    import sys

    sys.stdout.buffer.write(generate_document())
