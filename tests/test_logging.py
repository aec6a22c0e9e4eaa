"""Logs: one JSON object a line (or text for people), access lines with the request id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request

from function.logs import JsonFormatter, StderrLines
from tests.conftest import ServerProcess


def request(url: str, path: str, body: bytes | None = None, request_id: str | None = None) -> int:
    headers = {"Content-Type": "application/json"} | ({"X-Request-ID": request_id} if request_id else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=body, headers=headers)) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_json_access_log_has_one_object_per_request_and_skips_probes() -> None:
    server = ServerProcess()
    server.wait_ready()
    assert request(server.url, "/prediction", b'{"text": "orbit"}', request_id="trace-42") == 200
    assert request(server.url, "/prediction", b'{"text": ""}', request_id="trace-43") == 405
    assert request(server.url, "/healthz") == 200
    lines = [json.loads(line) for line in server.stop().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "function.access"]
    assert [(a["method"], a["path"], a["status"], a["request_id"]) for a in access] == [
        ("POST", "/prediction", 200, "trace-42"),
        ("POST", "/prediction", 405, "trace-43"),
    ]
    assert all(a["duration_ms"] >= 0 and a["time"].endswith("Z") for a in access)
    assert any(entry["message"].startswith("inference pool ready") for entry in lines)


def test_text_logs_for_people() -> None:
    server = ServerProcess(env={"LOG_FORMAT": "text"})
    server.wait_ready()
    assert request(server.url, "/prediction", b'{"text": "orbit"}', request_id="trace-7") == 200
    output = server.stop()
    line = next(line for line in output.splitlines() if "function.access" in line)
    assert "POST /prediction 200" in line
    assert "request_id=trace-7" in line
    assert not line.startswith("{")


async def test_lines_logged_in_a_loop_go_out_together_soon_and_a_warning_takes_them_at_once() -> None:
    stream = io.StringIO()
    handler = StderrLines(JsonFormatter())
    handler.setStream(stream)
    logger = logging.getLogger("tests.lines")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def messages() -> list[str]:
        return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]

    try:
        logger.info("first")
        logger.info("second")
        assert messages() == []  # held for one write
        await asyncio.sleep(StderrLines.FLUSH_SECONDS * 3)
        assert messages() == ["first", "second"]
        logger.info("third")
        logger.warning("trouble")
        assert messages() == ["first", "second", "third", "trouble"]  # in order, without waiting
    finally:
        logger.removeHandler(handler)


def test_lines_left_by_a_loop_that_closed_go_out_with_the_next_loops_batch() -> None:
    stream = io.StringIO()
    handler = StderrLines(JsonFormatter())
    handler.setStream(stream)
    logger = logging.getLogger("tests.lines.closed")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    async def log_then_wait(message: str, seconds: float) -> None:
        logger.info(message)
        await asyncio.sleep(seconds)

    try:
        asyncio.run(log_then_wait("from the first loop", 0))  # closes before its flush is due
        asyncio.run(log_then_wait("from the second loop", StderrLines.FLUSH_SECONDS * 3))
        assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
            "from the first loop",
            "from the second loop",
        ]
    finally:
        logger.removeHandler(handler)
