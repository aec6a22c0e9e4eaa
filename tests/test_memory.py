"""Memory after a burst: the server and a worker give back what the burst made them grow by, unasked."""

from __future__ import annotations

import asyncio
import sys

import pytest
from aiohttp import ClientSession

from bench.procs import rss_kib, worker_pids
from bench.servers import ServerProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; malloc_trim is glibc's")


def rss_mb(pid: int) -> float:
    kib = rss_kib(pid)
    assert kib is not None, f"process {pid} is gone"
    return kib / 1024


async def burst(http: ClientSession, url: str) -> None:
    """8 requests at once (the default queue bound), each 256 texts of 3 to 4 KB, four times."""
    texts = [f"orbit {i} " + "launch shuttle goalie puck " * (110 + i % 30) for i in range(256)]

    async def post() -> None:
        async with http.post(url + "/predictions", json={"texts": texts}) as answer:
            assert answer.status == 200, await answer.text()

    for _ in range(4):
        await asyncio.gather(*(post() for _ in range(8)))


async def test_after_a_burst_the_server_gives_the_memory_it_grew_by_back(
    server: ServerProcess, http: ClientSession
) -> None:
    pid = server.proc.pid
    before = rss_mb(pid)
    await burst(http, server.url)
    peak = rss_mb(pid)
    assert peak - before > 4, "the burst must grow the server for this test to mean anything"

    halfway = before + (peak - before) / 2
    for _ in range(50):  # the trim is due 1 to 1.5 s after the last request
        if rss_mb(pid) <= halfway:
            break
        await asyncio.sleep(0.1)
    settled = rss_mb(pid)

    assert settled <= halfway, f"RSS {before:.1f} -> {peak:.1f} -> {settled:.1f} MB"


async def test_after_a_burst_a_worker_gives_its_heap_back_with_no_request_following(
    server: ServerProcess, http: ClientSession
) -> None:
    [worker] = worker_pids(server.proc.pid)
    before = rss_mb(worker)
    texts = [" ".join(f"word{i}x{j}" for j in range(6000)) for i in range(8)]  # about 0.5 M distinct-ish tokens

    peak = before
    for _ in range(3):
        async with http.post(server.url + "/predictions", json={"texts": texts}) as answer:
            assert answer.status == 200, await answer.text()
        peak = max(peak, rss_mb(worker))
    assert peak - before > 4, f"the burst must grow the worker for this test to mean anything: {before} -> {peak}"

    halfway = before + (peak - before) / 2
    for _ in range(50):  # no request from here on: the worker trims by itself 1 to 1.5 s after its last call
        if rss_mb(worker) <= halfway:
            break
        await asyncio.sleep(0.1)
    settled = rss_mb(worker)
    assert settled <= halfway, f"worker RSS {before:.1f} -> {peak:.1f} -> {settled:.1f} MB"
