"""Logs: one JSON object a line (or text for people), access lines with the request id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import urllib.request
from collections.abc import Iterator

import pytest

from bench.servers import ServerProcess
from function.logs import JsonFormatter, StderrLines
from tests.helpers import ROOT


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


def test_the_startup_line_and_every_access_line_name_the_model_and_the_revision() -> None:
    server = ServerProcess(env={"K_REVISION": "newsgroups-classifier-00003"})
    server.wait_ready()
    assert request(server.url, "/prediction", b'{"text": "orbit"}') == 200
    assert request(server.url, "/nowhere") == 404
    lines = [json.loads(line) for line in server.stop().splitlines() if line.startswith("{")]
    info = json.loads((ROOT / "model/model.json").read_text())
    served = {"model": info["name"], "model_version": info["version"], "revision": "newsgroups-classifier-00003"}
    [startup] = [entry for entry in lines if entry["message"].startswith("serving model")]
    assert f"{info['name']} {info['version']} as revision newsgroups-classifier-00003" in startup["message"]
    access = [entry for entry in lines if entry["logger"] == "function.access"]
    assert len(access) == 2
    for entry in [startup, *access]:
        assert {name: entry.get(name) for name in served} == served


def test_text_logs_for_people() -> None:
    server = ServerProcess(env={"LOG_FORMAT": "text"})
    server.wait_ready()
    assert request(server.url, "/prediction", b'{"text": "orbit"}', request_id="trace-7") == 200
    output = server.stop()
    line = next(line for line in output.splitlines() if "function.access" in line)
    assert "POST /prediction 200" in line
    assert "request_id=trace-7" in line
    assert not line.startswith("{")


class Buffered:
    """A logger whose only handler is a ``StderrLines`` writing JSON lines into memory."""

    def __init__(self, name: str) -> None:
        self.stream = io.StringIO()
        self.handler = StderrLines(JsonFormatter(), self.stream)
        self.logger = logging.getLogger(name)
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)

    def messages(self) -> list[str]:
        """What has reached the stream so far."""
        return [json.loads(line)["message"] for line in self.stream.getvalue().splitlines()]

    def messages_within(self, seconds: float, count: int) -> list[str]:
        """What has reached the stream once it holds ``count`` lines, or after ``seconds``."""
        deadline = time.monotonic() + seconds
        while len(self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.messages()


@pytest.fixture
def buffered(request: pytest.FixtureRequest) -> Iterator[Buffered]:
    lines = Buffered(f"tests.lines.{request.node.name}")
    yield lines
    lines.logger.removeHandler(lines.handler)


async def test_lines_logged_in_a_loop_go_out_together_soon_and_a_warning_takes_them_at_once(
    buffered: Buffered,
) -> None:
    buffered.logger.info("first")
    buffered.logger.info("second")
    assert buffered.messages() == []  # held for one write
    await asyncio.sleep(StderrLines.FLUSH_SECONDS * 3)
    assert buffered.messages() == ["first", "second"]
    buffered.logger.info("third")
    buffered.logger.warning("trouble")
    # In order, and without the batch's wait: the writer thread takes them as soon as it runs.
    assert buffered.messages_within(StderrLines.FLUSH_SECONDS / 4, 4) == ["first", "second", "third", "trouble"]


def test_lines_left_by_a_loop_that_closed_go_out_with_the_next_loops_batch(buffered: Buffered) -> None:
    async def log_then_wait(message: str, seconds: float) -> None:
        buffered.logger.info(message)
        await asyncio.sleep(seconds)

    asyncio.run(log_then_wait("from the first loop", 0))  # closes before its flush is due
    asyncio.run(log_then_wait("from the second loop", StderrLines.FLUSH_SECONDS * 3))
    assert buffered.messages() == ["from the first loop", "from the second loop"]
