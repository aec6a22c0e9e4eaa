"""A hung worker (SIGSTOP: as a deadlock, a stuck call or swap thrash would leave it) is found,
killed and replaced; only what it held fails, with 503 ``model_unavailable``, and readiness says
503 while it is missing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import aiohttp
import pytest

from bench.procs import process_state, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import Outcome, http, sample, scrape, send, wait_for

pytestmark = pytest.mark.e2e

DEADLINE = 1.0  # INFERENCE_TIMEOUT_SECONDS for these servers
TEXT = {"text": "The goalie stopped the puck in overtime"}


async def watch_readiness(url: str, until: asyncio.Future[object]) -> list[tuple[float, int]]:
    """(time, status) of /readyz every 20 ms until ``until`` is done."""
    seen: list[tuple[float, int]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not until.done():
            async with session.get(url + "/readyz") as response:
                seen.append((time.monotonic(), response.status))
            await asyncio.sleep(0.02)
    return seen


async def test_a_worker_hung_under_load_is_killed_at_the_deadline_and_only_its_requests_get_503(
    servers: Callable[..., ServerProcess],
) -> None:
    server = servers({"WORKERS": "2", "INFERENCE_TIMEOUT_SECONDS": str(DEADLINE), "LOG_FORMAT": "text"})
    victim = worker_pids(server.proc.pid)[0]
    outcomes: list[Outcome] = []
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            outcomes.append(await send(session, server.url + "/prediction", TEXT))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        load = asyncio.gather(*(client(session) for _ in range(8)))
        await asyncio.sleep(0.5)
        os.kill(victim, signal.SIGSTOP)
        readiness = asyncio.ensure_future(watch_readiness(server.url, load))
        replaced = await asyncio.to_thread(
            wait_for, lambda: victim not in worker_pids(server.proc.pid) and len(worker_pids(server.proc.pid)) == 2, 10
        )
        await asyncio.sleep(1.0)
        stop.set()
        await load
        seen = await readiness
    samples = scrape(server.url)
    failed = [o for o in outcomes if o.status != 200]
    print(
        f"worker {victim} stopped: replaced after {replaced:.2f} s; {len(failed)} of {len(outcomes)} requests failed, "
        f"slowest {max(o.seconds for o in outcomes):.2f} s; readiness {sorted({s for _, s in seen})}"
    )
    assert process_state(victim) == "", "the hung worker is still there"
    assert replaced < DEADLINE + 3
    assert sample(samples, "textclf_pool_worker_restarts_total") == 1
    assert 1 <= len(failed) <= 8, "only the batch the hung worker held fails (one text per client at most)"
    assert all(o.status == 503 and o.body["error"] == "model_unavailable" for o in failed), failed
    assert all(o.seconds < DEADLINE + 1 for o in failed), "the deadline did not hold"
    assert max(o.seconds for o in outcomes) < DEADLINE + 2, "a request waited for the hung worker"
    assert 503 in {status for _, status in seen}, "readiness never said a worker was missing"
    assert seen[-1][1] == 200, "readiness did not come back"


async def test_an_idle_worker_that_hangs_is_found_by_the_probe_and_replaced(
    servers: Callable[..., ServerProcess],
) -> None:
    server = servers({"WORKERS": "1", "LOG_FORMAT": "text"})
    [victim] = worker_pids(server.proc.pid)
    os.kill(victim, signal.SIGSTOP)
    hung_at = time.monotonic()
    done = asyncio.get_running_loop().create_future()
    readiness = asyncio.ensure_future(watch_readiness(server.url, done))
    replaced = await asyncio.to_thread(
        wait_for, lambda: victim not in worker_pids(server.proc.pid) and len(worker_pids(server.proc.pid)) == 1, 10
    )
    await asyncio.to_thread(wait_for, lambda: server_ready(server), 5)
    done.set_result(None)
    seen = await readiness
    async with aiohttp.ClientSession() as session:
        answer = await send(session, server.url + "/prediction", TEXT)
    print(f"idle worker {victim} stopped: replaced after {replaced:.2f} s, {time.monotonic() - hung_at:.2f} s to ready")
    assert replaced < 0.5 + 2.0 + 1.0  # probe interval + probe timeout + a start
    assert 503 in {status for _, status in seen}
    assert answer.status == 200
    assert "did not answer within 2 s" in server.stop()


def server_ready(server: ServerProcess) -> bool:
    return http("GET", server.url + "/readyz").status == 200
