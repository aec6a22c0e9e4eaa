"""Logs that cannot be forged and never block: control characters a client sends stay escaped on
one line, and a stderr nobody reads costs log lines (dropped and counted), never answers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Callable

import aiohttp
import pytest

from bench.http1 import exchange, request
from bench.procs import gone, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import JSON, http, is_ready, sample, scrape, wait_for

pytestmark = pytest.mark.e2e


async def test_a_control_character_in_a_path_cannot_start_a_log_line(servers: Callable[..., ServerProcess]) -> None:
    server = servers({"LOG_FORMAT": "text"})
    forged = "/nothing%0a2026-01-01%2000:00:00,000%20ERROR%20forged:%20pwned"
    result = await exchange(server.url, request("GET", forged))
    assert result.statuses == [404]
    output = server.stop()
    lines = output.splitlines()
    assert not [line for line in lines if "forged" in line and line.split(" ")[2:3] != ["INFO"]], output
    [access] = [line for line in lines if "/nothing" in line]
    assert "\\x0a2026-01-01" in access


async def test_a_stderr_nobody_reads_drops_lines_and_the_service_keeps_answering(
    servers: Callable[..., ServerProcess],
) -> None:
    server = servers({"LOG_FORMAT": "json"}, stderr=subprocess.PIPE)  # a pipe of 64 KiB, never read
    statuses: list[int] = []
    long_path = "/" + "x" * 2000  # 2 kB access lines: 4000 of them are 8 MB, far past what is kept
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def client() -> None:
            for _ in range(500):
                async with session.get(server.url + long_path) as r:
                    statuses.append(r.status)
                async with session.post(server.url + "/prediction", data=b'{"text": "puck"}', headers=JSON) as r:
                    statuses.append(r.status)

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(8))), 60)
    health = http("GET", server.url + "/healthz")
    dropped = sample(scrape(server.url), "textclf_log_lines_dropped_total")
    print(f"8000 requests with stderr unread: {statuses.count(200)} answered 200, {dropped:.0f} log lines dropped")
    assert sorted(statuses) == [200] * 4000 + [404] * 4000
    assert health.status == 200
    assert dropped > 0


def test_every_stderr_line_is_json(servers: Callable[..., ServerProcess]) -> None:
    """Start, requests good and bad, a worker replaced, a stop: nothing on stderr but JSON lines,
    with a $HOME nothing can be written to, as in the image (where a library would warn)."""
    server = servers({"LOG_FORMAT": "json", "WORKERS": "2", "HOME": "/proc/no-home"})
    http("POST", server.url + "/prediction", b'{"text": "a pgp key"}', JSON)
    http("POST", server.url + "/prediction", b"{", JSON)
    http("GET", server.url + "/nowhere")
    victim = worker_pids(server.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: gone(victim) and is_ready(server.url), 10)
    output = server.stop()
    lines = output.splitlines()
    not_json = [line for line in lines if not is_json_object(line)]
    assert len(lines) > 5
    assert not not_json, not_json


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
