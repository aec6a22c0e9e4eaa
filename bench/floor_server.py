"""``python -m bench.floor_server``: the least aiohttp server of this API, the floor of ``bench.run``.

An aiohttp ``web.Application`` on uvloop with one route that does what every server of
``POST /prediction`` must: read the body, decode it with orjson, check that ``text`` is a string,
and answer a constant label encoded with orjson. No middleware, request id, metrics, access log,
body budget, batching or model. ``GET /readyz`` answers 200 for the benchmark's start-up wait.
Listens on HOST and PORT from the environment, like ``python -m function``; stops on SIGTERM.
"""

from __future__ import annotations

import os
import sys

import orjson
import uvloop
from aiohttp import web

ANSWER = orjson.dumps({"label": "space"})
INVALID = orjson.dumps({"error": "validation_error", "detail": "'text' must be a string"})
JSON = "application/json"


async def prediction(request: web.Request) -> web.Response:
    """``{"label": "space"}`` for a JSON object whose ``text`` is a string; 405 (as the service) otherwise."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.Response(status=405, body=INVALID, content_type=JSON)
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return web.Response(status=405, body=INVALID, content_type=JSON)
    return web.Response(body=ANSWER, content_type=JSON)


async def ready(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ready"}', content_type=JSON)


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/prediction", prediction)
    app.router.add_get("/readyz", ready)
    return app


def main() -> int:
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8080"))
    web.run_app(create_app(), host=host, port=port, access_log=None, print=None, loop=uvloop.new_event_loop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
