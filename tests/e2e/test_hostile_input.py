"""Hostile and malformed requests on a real socket, byte for byte, and what each gets.

Requests the HTTP parser refuses (aiohttp's C parser) get its plain-text 400 and the connection is
closed; everything that reaches the service gets a JSON ``{"error", "detail"}`` answer. Nothing
hangs the server, crashes it or costs it a worker. Slow clients are cut off: a request head that
never ends by KEEPALIVE_TIMEOUT_SECONDS after the connection opened (aiohttp has no timeout of its
own for reading a head), a body by BODY_TIMEOUT_SECONDS (408); after a 408 aiohttp reads and drops
what still comes for its lingering time (10 s), then closes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.http1 import Exchange, exchange, request
from bench.procs import worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import (
    BODY_TIMEOUT,
    http,
    predict,
    sample,
    scrape,
    start_server,
    without_prediction_id,
)

pytestmark = pytest.mark.e2e

LIMIT = 1024 * 1024  # the default MAX_BODY_BYTES, which the shared server keeps
HOCKEY = "The goalie stopped the puck in overtime"
SPACE = "NASA launched the shuttle into orbit"


def text_body(size: int) -> bytes:
    """A valid ``{"text": "aaa..."}`` body of exactly ``size`` bytes."""
    prefix, suffix = b'{"text": "', b'"}'
    return prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix


def post(body: bytes, target: str = "/prediction", **headers: str) -> bytes:
    return request("POST", target, body, headers)


def raw_post(head_fields: str, body: bytes = b"", target: str = "/prediction") -> bytes:
    """A POST whose head is written by hand (Host and Connection: close added)."""
    return f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{head_fields}\r\n".encode() + body


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Case:
    name: str
    send: bytes | tuple[bytes, ...]
    statuses: tuple[int, ...]  # final responses, in order
    error: str | None = None  # the JSON error code of the last response
    label: str | None = None  # the label of the last response
    #: Who answers the last request: "service" (JSON, through the middleware), "parser" (aiohttp's
    #: HTTP parser refuses it before the service sees it: plain text 400, connection closed),
    #: "head" (no body, by definition).
    by: str = "service"
    within: float = 5.0  # seconds the whole exchange may take


PARSER_400: dict[str, Any] = {"by": "parser"}

CASES = [
    # ---- the body: encodings and JSON ------------------------------------------------------------
    Case("invalid UTF-8 in a string", post(b'{"text": "\xff\xfe orbit"}'), (405,), "validation_error"),
    Case("overlong UTF-8 encoding", post(b'{"text": "\xc0\xaf"}'), (405,), "validation_error"),
    Case("lone UTF-16 surrogate escape", post(b'{"text": "\\udc00"}'), (405,), "validation_error"),
    Case("JSON behind a UTF-8 BOM", post(b'\xef\xbb\xbf{"text": "orbit"}'), (405,), "validation_error"),
    Case("truncated JSON", post(b'{"text": "orbit'), (405,), "validation_error"),
    Case("empty body", post(b""), (405,), "validation_error"),
    Case("not JSON at all", post(b"text=orbit"), (405,), "validation_error"),
    Case("NaN is not JSON", post(b'{"text": NaN}'), (405,), "validation_error"),
    Case("a 5000-digit number", post(b'{"text": 1' + b"0" * 5000 + b"}"), (405,), "validation_error"),
    Case("nesting 100000 deep", post(nested(100_000)), (405,), "validation_error"),
    Case(
        "nesting past the parser's depth limit (1024)",
        post(b'{"x": ' + nested(1100) + b', "text": "a"}'),
        (405,),
        "validation_error",
    ),
    Case(
        "nesting 500 deep in an unknown field is ignored",
        post(b'{"x": ' + nested(500) + b', "text": "orbit"}'),
        (200,),
        label="space",
    ),
    Case("a number where text belongs", post(b'{"text": 42}'), (405,), "validation_error"),
    Case("null where text belongs", post(b'{"text": null}'), (405,), "validation_error"),
    Case("a boolean where text belongs", post(b'{"text": true}'), (405,), "validation_error"),
    Case("an array where text belongs", post(b'{"text": ["orbit"]}'), (405,), "validation_error"),
    Case("an object where text belongs", post(b'{"text": {"text": "orbit"}}'), (405,), "validation_error"),
    Case("a bare number body", post(b"42"), (405,), "validation_error"),
    Case("a null body", post(b"null"), (405,), "validation_error"),
    Case("a bare string body", post(b'"orbit"'), (405,), "validation_error"),
    Case(
        "only Unicode whitespace", post('{"text": "\u3000\u00a0\u2028\ufeff\t"}'.encode()), (405,), "validation_error"
    ),
    Case("an escaped NUL is content", post(b'{"text": "orbit\\u0000"}'), (200,), label="space"),
    Case(
        "duplicate keys: the last one counts",
        post(json.dumps({"text": SPACE})[:-1].encode() + b', "text": ' + json.dumps(HOCKEY).encode() + b"}"),
        (200,),
        label="hockey",
    ),
    Case("duplicate keys: an invalid last one", post(b'{"text": "orbit", "text": 5}'), (405,), "validation_error"),
    Case(
        "a batch over MAX_BATCH_ITEMS",
        post(json.dumps({"texts": ["a1"] * 257}).encode(), "/predictions"),
        (405,),
        "validation_error",
    ),
    Case("a body of exactly MAX_BODY_BYTES", post(text_body(LIMIT)), (200,)),
    Case("a body one byte over MAX_BODY_BYTES", post(text_body(LIMIT + 1)), (413,), "payload_too_large"),
    Case(
        "a gzip bomb: 16 MiB once inflated",
        post(gzip.compress(text_body(16 * LIMIT)), **{"Content-Encoding": "gzip"}),
        (413,),
        "payload_too_large",
    ),
    Case(
        "a valid gzip body",
        post(gzip.compress(json.dumps({"text": SPACE}).encode()), **{"Content-Encoding": "gzip"}),
        (200,),
        label="space",
    ),
    # ---- framing: Content-Length and chunked -----------------------------------------------------
    Case(
        "a chunked body",
        raw_post(
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            chunked(b'{"text": ', json.dumps(SPACE).encode(), b"}"),
        ),
        (200,),
        label="space",
    ),
    Case(
        "a chunked body one byte a chunk",
        raw_post(
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            chunked(*(bytes([b]) for b in json.dumps({"text": HOCKEY}).encode())),
        ),
        (200,),
        label="hockey",
    ),
    Case(
        "a chunked body over MAX_BODY_BYTES",
        raw_post("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", chunked(text_body(LIMIT + 1))),
        (413,),
        "payload_too_large",
    ),
    Case(
        "a chunk size that lies",
        raw_post(
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", b'5\r\n{"text": "orbit"}\r\n0\r\n\r\n'
        ),
        (400,),
        **PARSER_400,
    ),
    Case(
        "Content-Length shorter than the body (keep-alive): the rest is not run as a request",
        request("POST", "/prediction", b'{"text": "orbit"}', {"Content-Length": "5"}, close=False),
        (400,),
        **PARSER_400,
    ),
    Case(
        "Content-Length longer than the body: 408 after BODY_TIMEOUT_SECONDS",
        request("POST", "/prediction", b'{"text": "orbit"}', {"Content-Length": "100"}, close=False),
        (408,),
        "request_timeout",
        within=BODY_TIMEOUT + 3,
    ),
    Case(
        "Content-Length and Transfer-Encoding together (smuggling)",
        raw_post("Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        (400,),
        **PARSER_400,
    ),
    Case(
        "two different Content-Lengths",
        raw_post(
            "Content-Type: application/json\r\nContent-Length: 17\r\nContent-Length: 16\r\n", b'{"text": "orbit"}'
        ),
        (400,),
        **PARSER_400,
    ),
    Case(
        "a negative Content-Length",
        raw_post("Content-Type: application/json\r\nContent-Length: -1\r\n"),
        (400,),
        **PARSER_400,
    ),
    Case(
        "a Content-Length past 2**64",
        raw_post("Content-Type: application/json\r\nContent-Length: 1" + "0" * 20 + "\r\n"),
        (400,),
        **PARSER_400,
    ),
    Case(
        "Transfer-Encoding that is not chunked",
        raw_post("Content-Type: application/json\r\nTransfer-Encoding: identity\r\n"),
        (400,),
        **PARSER_400,
    ),
    # ---- content types ---------------------------------------------------------------------------
    Case("text/plain", post(b'{"text": "orbit"}', **{"Content-Type": "text/plain"}), (415,), "unsupported_media_type"),
    Case(
        "no Content-Type",
        request("POST", "/prediction", b'{"text": "orbit"}', content_type=None),
        (415,),
        "unsupported_media_type",
    ),
    Case(
        "a JSON-ish type that is not application/json",
        post(b'{"text": "orbit"}', **{"Content-Type": "application/json-patch+json"}),
        (415,),
        "unsupported_media_type",
    ),
    Case(
        "multipart/form-data",
        post(b"--x\r\n\r\n--x--", **{"Content-Type": "multipart/form-data; boundary=x"}),
        (415,),
        "unsupported_media_type",
    ),
    Case(
        "APPLICATION/JSON with a charset is JSON",
        post(b'{"text": "orbit"}', **{"Content-Type": "APPLICATION/JSON; charset=utf-8"}),
        (200,),
        label="space",
    ),
    # ---- heads: sizes, counts, syntax ------------------------------------------------------------
    Case("a header line just under 8190 bytes", request("GET", "/healthz", headers={"X-Big": "a" * 8000}), (200,)),
    Case(
        "a header line over 8190 bytes",
        request("GET", "/healthz", headers={"X-Big": "a" * 100_000}),
        (400,),
        **PARSER_400,
    ),
    Case("a hundred headers", request("GET", "/healthz", headers={f"X-H{i}": "v" for i in range(100)}), (200,)),
    Case(
        "five thousand headers",
        request("GET", "/healthz", headers={f"X-H{i}": "v" for i in range(5000)}),
        (400,),
        **PARSER_400,
    ),
    Case("a 20 kB URL", request("GET", "/healthz?" + "a" * 20_000), (400,), **PARSER_400),
    Case(
        "a CR inside a header value",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rb\r\n\r\n",
        (400,),
        **PARSER_400,
    ),
    Case(
        "a folded (obsolete) header line",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n X-Folded: y\r\n\r\n",
        (400,),
        **PARSER_400,
    ),
    Case("bare LF line endings", b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n", (400,), **PARSER_400),
    Case("no Host header in HTTP/1.1", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", (400,), **PARSER_400),
    Case("binary garbage", b"\x00\x01\x02\xff garbage\r\n\r\n", (400,), **PARSER_400),
    Case("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400,), **PARSER_400),
    Case("HTTP/9.9", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", (400,), **PARSER_400),
    Case(
        "a hostile X-Request-ID is replaced, not echoed",
        request("GET", "/healthz", headers={"X-Request-ID": "<script>" + "a" * 200}),
        (200,),
    ),
    # ---- methods and paths -----------------------------------------------------------------------
    Case("an unknown method", request("BREW", "/prediction"), (400,), **PARSER_400),
    Case("PUT on /prediction", request("PUT", "/prediction", b'{"text": "orbit"}'), (405,), "method_not_allowed"),
    Case("DELETE on /model", request("DELETE", "/model"), (405,), "method_not_allowed"),
    Case("TRACE", request("TRACE", "/healthz"), (405,), "method_not_allowed"),
    Case("HEAD on a GET endpoint is answered like GET, without a body", request("HEAD", "/healthz"), (200,), by="head"),
    Case("/../etc/passwd", request("GET", "/../etc/passwd"), (404,), "not_found"),
    Case("/%2e%2e/%2e%2e/etc/passwd", request("GET", "/%2e%2e/%2e%2e/etc/passwd"), (404,), "not_found"),
    Case("/docs/static/../../etc/passwd", request("GET", "/docs/static/../../etc/passwd"), (404,), "not_found"),
    Case("/docs/static/ with %2e%2e", request("GET", "/docs/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd"), (404,)),
    Case("/docs/static/ with %2f", request("GET", "/docs/static/..%2f..%2f..%2fetc%2fpasswd"), (404,)),
    # NOTE: the docs' assets are a fixed list of file names: anything else is a JSON 404.
    Case("/docs/static/ with ....//", request("GET", "/docs/static/....//....//etc/passwd"), (404,), "not_found"),
    Case("/docs/static/ with backslashes", request("GET", "/docs/static/..\\..\\..\\etc\\passwd"), (404,), "not_found"),
    Case("/docs/static/ with an absolute path", request("GET", "/docs/static//etc/passwd"), (404,), "not_found"),
    Case("the static folder itself is not listed", request("GET", "/docs/static/"), (404,), "not_found"),
    Case("a NUL byte in the path", b"GET /healthz\x00 HTTP/1.1\r\nHost: x\r\n\r\n", (400,), **PARSER_400),
    Case("raw UTF-8 in the path", "GET /prédiction HTTP/1.1\r\nHost: x\r\n\r\n".encode(), (400,), **PARSER_400),
    # ---- protocol versions, pipelining, expectations ---------------------------------------------
    Case("HTTP/1.0", request("GET", "/healthz", version="HTTP/1.0"), (200,)),
    Case(
        "HTTP/1.0 prediction",
        request("POST", "/prediction", json.dumps({"text": SPACE}).encode(), version="HTTP/1.0"),
        (200,),
        label="space",
    ),
    Case(
        "three pipelined requests, answered in order",
        request("GET", "/healthz", close=False)
        + request("POST", "/prediction", json.dumps({"text": SPACE}).encode(), close=False)
        + request("POST", "/prediction", json.dumps({"text": HOCKEY}).encode()),
        (200, 200, 200),
        label="hockey",
    ),
    # NOTE: aiohttp drops the requests it parsed from the same read as a parse error: the good
    # request is neither run nor answered, only the 400 is (likewise a body longer than its length).
    Case(
        "pipelined in one write: a good request, then garbage",
        request("GET", "/healthz", close=False) + b"\x00garbage\r\n\r\n",
        (400,),
        **PARSER_400,
    ),
    Case("Expect: 100-continue", post(b'{"text": "orbit"}', Expect="100-continue"), (200,), label="space"),
    Case("an absolute-form target", request("GET", "http://127.0.0.1/healthz"), (200,)),
    Case(
        "an Upgrade to websocket is ignored",
        post(json.dumps({"text": SPACE}).encode(), Upgrade="websocket"),
        (200,),
        label="space",
    ),
]


@pytest.fixture(scope="module")
def before(live: ServerProcess) -> tuple[list[int], float]:
    """The live server's workers and restart count before the table."""
    return worker_pids(live.proc.pid), sample(scrape(live.url), "textclf_pool_worker_restarts_total")


def check(case: Case, result: Exchange) -> None:
    shown = f"{case.name}: {result}"
    assert not result.timed_out, shown
    assert result.seconds < case.within, shown
    assert result.statuses == list(case.statuses), shown
    assert all(b"Traceback" not in r.body for r in result.responses), shown
    last = result.responses[-1]
    content_type = last.header("Content-Type") or ""
    if case.by == "service":
        assert content_type.startswith("application/json"), shown
        assert last.header("X-Request-ID"), shown
        answer = last.json()
        if last.status >= 400:
            assert set(answer) == {"error", "detail"}, shown
        if case.error:
            assert answer["error"] == case.error, shown
        if case.label:
            assert without_prediction_id(answer) == {"label": case.label}, shown
    elif case.by == "parser":
        assert last.status == 400, shown
        assert content_type.startswith("text/plain"), shown
        assert last.header("X-Request-ID") is None, shown  # the service never saw it
    else:
        assert case.by == "head", case
        assert last.body == b"", shown


def test_the_table_is_long_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_request(live: ServerProcess, before: tuple[list[int], float], case: Case) -> None:
    result = await exchange(
        live.url,
        case.send,
        expect=len(case.statuses),
        give_up_after=case.within + 5,
        head_requests=int(case.by == "head"),
    )
    check(case, result)


async def test_a_hostile_request_id_is_never_echoed(live: ServerProcess) -> None:
    result = await exchange(live.url, request("GET", "/healthz", headers={"X-Request-ID": "<script>alert(1)"}))
    request_id = result.responses[0].header("X-Request-ID")
    assert request_id is not None
    assert "<" not in request_id
    assert len(request_id) == 32


def test_after_the_table_the_service_is_whole(live: ServerProcess, before: tuple[list[int], float]) -> None:
    workers, restarts = before
    assert len(workers) == 2
    assert worker_pids(live.proc.pid) == workers, "a worker was replaced"
    samples = scrape(live.url)
    assert sample(samples, "textclf_pool_worker_restarts_total") == restarts == 0
    assert sample(samples, "textclf_pool_workers_alive") == 2
    assert http("GET", live.url + "/readyz").status == 200
    answer = predict(live.url, HOCKEY)
    assert (answer.status, without_prediction_id(answer.json())) == (200, {"label": "hockey"})


# ---- slow clients, on a server of their own with short timeouts --------------------------------------

KEEPALIVE = 2.0
PATIENT_ENV = {"WORKERS": "1", "KEEPALIVE_TIMEOUT_SECONDS": str(KEEPALIVE), "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)}


@pytest.fixture(scope="module")
def patient() -> Iterator[ServerProcess]:
    """A server whose timeouts are seconds (the defaults are 75 s keep-alive and 30 s body)."""
    server = start_server(PATIENT_ENV)
    try:
        yield server
    finally:
        server.stop()


def one_byte_at_a_time(data: bytes) -> tuple[bytes, ...]:
    return tuple(data[i : i + 1] for i in range(len(data)))


async def timed_predictions(url: str, count: int) -> list[float]:
    """Seconds each of ``count`` sequential predictions took (each must be a 200)."""
    seconds = []
    for _ in range(count):
        result = await exchange(url, request("POST", "/prediction", json.dumps({"text": SPACE}).encode()))
        assert result.statuses == [200], result
        seconds.append(result.seconds)
        await asyncio.sleep(0.05)
    return seconds


async def test_clients_that_dribble_their_head_are_cut_off_and_others_are_served_meanwhile(
    patient: ServerProcess,
) -> None:
    head = request("GET", "/healthz", headers={"X-Slow": "a" * 200})
    slow = [
        asyncio.create_task(exchange(patient.url, one_byte_at_a_time(head), pause=0.1, give_up_after=KEEPALIVE + 8))
        for _ in range(20)
    ]
    await asyncio.sleep(0.3)
    latencies = await timed_predictions(patient.url, 20)
    dribblers = await asyncio.gather(*slow)
    assert max(latencies) < 1.0, latencies
    for result in dribblers:
        # NOTE: aiohttp has no timeout for reading a request head; what ends these connections is
        # the keep-alive timeout, counted from the connection's start (not reset by each byte).
        assert not result.timed_out, result
        assert result.closed, result
        assert not result.responses, result
        assert KEEPALIVE - 0.2 < result.seconds < KEEPALIVE + 2, result


async def test_a_body_sent_a_byte_at_a_time_gets_408_after_the_body_timeout(patient: ServerProcess) -> None:
    body = json.dumps({"text": SPACE + " " * 200}).encode()
    head = request("POST", "/prediction", b"", {"Content-Length": str(len(body))}, close=False)
    result = await exchange(patient.url, (head, *one_byte_at_a_time(body)), pause=0.05)
    assert result.statuses == [408], result
    assert result.responses[0].json()["error"] == "request_timeout"
    assert BODY_TIMEOUT - 0.2 < result.seconds < BODY_TIMEOUT + 2, result


async def test_a_slow_but_steady_body_within_the_timeout_is_served(patient: ServerProcess) -> None:
    body = json.dumps({"text": SPACE}).encode()
    pieces = (request("POST", "/prediction", b"", {"Content-Length": str(len(body))}), *one_byte_at_a_time(body))
    result = await exchange(patient.url, pieces, pause=BODY_TIMEOUT / 2 / len(body))
    assert result.statuses == [200], result
    assert result.responses[0].json() == {"label": "space"}


async def test_a_connection_that_never_sends_a_byte_is_closed_after_the_keepalive_timeout(
    patient: ServerProcess,
) -> None:
    result = await exchange(patient.url, b"", give_up_after=KEEPALIVE + 8)
    assert result.closed, result
    assert not result.responses, result
    assert KEEPALIVE - 0.2 < result.seconds < KEEPALIVE + 2, result


async def test_after_an_unread_body_the_server_lingers_then_closes(patient: ServerProcess) -> None:
    """A body that keeps coming after its 408 is read and discarded for aiohttp's lingering time
    (10 s), then the connection is closed: a client cannot hold it forever."""
    head = request("POST", "/prediction", b"", {"Content-Length": "100000"}, close=False)
    result = await exchange(patient.url, (head, *[b"a" * 10] * 200), pause=0.1, expect=2, give_up_after=30)
    assert result.statuses == [408], result
    assert result.closed, result
    assert result.seconds < BODY_TIMEOUT + 10 + 3, result


# ---- once service bugs, now fixed: kept as regression tests -----------------------------------------


async def test_a_body_that_cannot_be_decompressed_is_a_client_error(patient: ServerProcess) -> None:
    result = await exchange(patient.url, post(b'{"text": "orbit"}', **{"Content-Encoding": "gzip"}))
    assert len(result.statuses) == 1, result
    assert 400 <= result.statuses[0] < 500, result


async def test_a_client_that_leaves_mid_body_is_not_counted_as_a_server_error(patient: ServerProcess) -> None:
    before = sample(scrape(patient.url), "textclf_http_requests_total", route="/prediction", method="POST", code="500")
    head = request("POST", "/prediction", b'{"text": "orb', {"Content-Length": "100"}, close=False)
    _, writer = await asyncio.open_connection("127.0.0.1", int(patient.url.rsplit(":", 1)[1]))
    writer.write(head)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    after = sample(scrape(patient.url), "textclf_http_requests_total", route="/prediction", method="POST", code="500")
    assert after == before


async def test_a_missing_docs_asset_is_a_json_404_and_counted_as_one(patient: ServerProcess) -> None:
    def counted(code: str) -> float:
        route = "/docs/static/{name}"
        return sample(scrape(patient.url), "textclf_http_requests_total", route=route, method="GET", code=code)

    before = counted("404")
    result = await exchange(patient.url, request("GET", "/docs/static/no-such-file.js"))
    assert result.statuses == [404], result
    assert counted("404") == before + 1
    assert result.responses[0].json() == {
        "error": "not_found",
        "detail": "Not Found: no route /docs/static/no-such-file.js; the API is described at /docs",
    }
