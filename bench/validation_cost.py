"""``python -m bench.validation_cost``: webargs validation (aiohttp-apispec) vs the hand validation.

Both run in-process on real ``aiohttp.web.Request`` objects (``make_mocked_request`` with the
body in a real ``StreamReader``, routed by a real router), one test-set body per request:

- **aiohttp-apispec**: ``validation_middleware`` as ``setup_aiohttp_apispec`` would install it,
  in front of ``function.handlers.prediction`` (whose ``@request_schema(ApiRequestSchema)`` it
  reads); webargs reads the body, decodes it with the standard ``json`` module and loads the
  marshmallow schema (the ``Regexp`` check included). The next handler is a no-op.
- **hand**: ``function.validation.read_json`` (orjson, under the body timeout) and ``prediction_text``,
  as the handler does.

Only the validation call is timed (not building the request); the two alternate block by
block of requests, so that noise on the machine falls on both. Writes ``bench/VALIDATION.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import cast

import orjson
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from aiohttp_apispec import setup_aiohttp_apispec, validation_middleware

from bench import machine
from bench.data import test_texts
from bench.paths import BENCH
from bench.stats import median
from bench.tables import markdown_table, publish
from function import handlers
from function.schemas import ApiRequestSchema
from function.settings import Settings
from function.validation import prediction_text, read_json

HEADERS = {"Content-Type": "application/json"}
BODY_TIMEOUT = Settings().body_timeout_seconds  # as the handler passes it
BLOCK = 50  # requests timed together (timer overhead and one-off noise spread over them)
Approach = Callable[[web.Request], Awaitable[object]]


def apispec_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/prediction", handlers.prediction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # apispec/webargs deprecation warnings, and string app keys
        setup_aiohttp_apispec(app, url="", swagger_path=None)
    return app


class _Protocol:
    """The flow-control calls a StreamReader makes; a plain object, so that timing is not of ``mock``."""

    _reading_paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False


async def request_for(app: web.Application, body: bytes) -> web.Request:
    """A routed POST /prediction request whose body is ``body``, unread."""
    protocol = cast(BaseProtocol, _Protocol())
    payload = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    request = make_mocked_request("POST", "/prediction", headers=HEADERS, app=app, payload=payload)
    match = await app.router.resolve(request)
    match.add_app(app)
    request._match_info = match
    return request


async def _no_op(request: web.Request) -> web.StreamResponse:
    return web.Response()


async def with_apispec(request: web.Request) -> object:
    await validation_middleware(request, _no_op)
    return request["data"]


async def by_hand(request: web.Request) -> object:
    return prediction_text(await read_json(request, BODY_TIMEOUT))


async def time_approaches(bodies: Sequence[bytes], rounds: int) -> dict[str, list[float]]:
    """Seconds per request of each approach, one figure per block of BLOCK requests."""
    app = apispec_app()
    approaches: dict[str, Approach] = {"aiohttp-apispec validation_middleware": with_apispec, "hand": by_hand}
    seconds: dict[str, list[float]] = {name: [] for name in approaches}
    for _ in range(rounds):
        for start in range(0, len(bodies), BLOCK):
            block = bodies[start : start + BLOCK]
            for name, approach in approaches.items():
                requests = [await request_for(app, body) for body in block]
                t0 = time.perf_counter()
                for request in requests:
                    await approach(request)
                seconds[name].append((time.perf_counter() - t0) / len(requests))
    return seconds


def time_parts(bodies: Sequence[bytes], rounds: int) -> dict[str, list[float]]:
    """The pieces that differ: the JSON decoders, and the schema load on an already-decoded body."""
    schema = ApiRequestSchema()
    decoded = [json.loads(b) for b in bodies]
    parts: dict[str, Callable[[int], object]] = {
        "json.loads (stdlib, used by webargs)": lambda i: json.loads(bodies[i]),
        "orjson.loads (used by the service)": lambda i: orjson.loads(bodies[i]),
        "ApiRequestSchema().load on the decoded body": lambda i: schema.load(decoded[i]),
        "prediction_text on the decoded body": lambda i: prediction_text(decoded[i]),
    }
    seconds: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for start in range(0, len(bodies), BLOCK):
            block = range(start, min(start + BLOCK, len(bodies)))
            for name, part in parts.items():
                t0 = time.perf_counter()
                for i in block:
                    part(i)
                seconds[name].append((time.perf_counter() - t0) / len(block))
    return seconds


def _row(name: str, seconds: list[float]) -> list[str]:
    us = sorted(s * 1e6 for s in seconds)
    return [name, f"{median(us):.1f}", f"{sum(us) / len(us):.1f}", f"{us[int(len(us) * 0.9)]:.1f}"]


def render(whole: dict[str, list[float]], parts: dict[str, list[float]], rounds: int, n: int) -> str:
    (api_name, api), (hand_name, hand) = whole.items()
    header = ["µs per request", f"median of {BLOCK}-request blocks", "mean", "90th percentile block"]
    extra = (sum(api) / len(api) - sum(hand) / len(hand)) * 1e6
    ratio = (sum(api) / len(api)) / (sum(hand) / len(hand))
    return "\n".join(
        [
            "# Cost of request validation: aiohttp-apispec (webargs) vs by hand",
            "",
            f"Machine: {machine.describe()}. Regenerate with `python -m bench.validation_cost`.",
            "",
            f"In-process, on real routed `web.Request` objects carrying each of the {n} test-set bodies "
            f'(`{{"text": ...}}`, {rounds} round(s)). Requests are built first, then blocks of {BLOCK} are '
            "validated under the clock; the two approaches alternate block by block over the same bodies. "
            "See the module docstring for exactly what each one runs.",
            "",
            markdown_table(header, [_row(api_name, api), _row(hand_name, hand)]),
            "",
            f"**validation_middleware costs {extra:.1f} µs more per request on average ({ratio:.1f}x the hand "
            "validation).** Where it goes:",
            "",
            markdown_table(header, [_row(name, s) for name, s in parts.items()]),
            "",
            "Both read the body from the same stream; the difference is webargs' machinery (looking the "
            "field up in the querystring, form and JSON locations in turn), the standard-library JSON decoder "
            "instead of orjson (which grows with the body: test texts average about 1.8 kB), and the "
            "marshmallow schema load.",
            "",
            f"For scale: the HTTP-only ceiling in `bench/RESULTS.md` is a few thousand requests/s on one event "
            f"loop, i.e. a few hundred µs of event-loop time per request, so webargs would add roughly "
            f"{extra:.0f} µs of it to every request: the reason the handlers validate by hand and the "
            "schemas only document the API.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.validation_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over the test bodies")
    parser.add_argument("--out", type=Path, default=BENCH / "VALIDATION.md", help="where to write the result")
    args = parser.parse_args(argv)
    bodies = [orjson.dumps({"text": text}) for text in test_texts()]
    whole = asyncio.run(time_approaches(bodies, args.rounds))
    parts = time_parts(bodies, args.rounds)
    report = render(whole, parts, args.rounds, len(bodies))
    publish(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
