"""Faults under load, each on a server process of its own: a worker killed, SIGTERM, overload.

The load comes from an aiohttp client on loopback, bounded in requests and in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from bench.procs import descendants, gone, pid_alive, process_state, tree_rss_bytes, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import Outcome, sample, scrape, send, total, wait_for

pytestmark = pytest.mark.e2e

TEXTS = {
    "The goalie stopped the puck in overtime": "hockey",
    "NASA launched the shuttle into orbit": "space",
    "The pitcher threw a no-hitter": "baseball",
    "PGP keys and the clipper chip": "cryptography",
}
#: A batch that keeps a worker busy for a few milliseconds (16 texts of about 2 kB).
BATCH = [text + " " + text.lower() * 30 for text in TEXTS] * 4
BATCH_LABELS = list(TEXTS.values()) * 4
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)


# ---- a worker killed under load ------------------------------------------------------------------------


async def test_a_worker_killed_under_load_fails_only_its_requests_and_is_replaced_within_2s(
    servers: Callable[[dict[str, str]], ServerProcess],
) -> None:
    server = servers({"WORKERS": "2", "LOG_FORMAT": "text"})
    workers = worker_pids(server.proc.pid)
    assert len(workers) == 2, workers
    victim = workers[0]
    clients, per_client = 8, 40
    outcomes: list[Outcome] = []

    async def client(http: aiohttp.ClientSession) -> None:
        for _ in range(per_client):
            outcomes.append(await send(http, server.url + "/predictions", {"texts": BATCH}))

    async def ready(http: aiohttp.ClientSession) -> bool:
        async with http.get(server.url + "/readyz") as response:
            return response.status == 200

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        load = asyncio.gather(*(client(http) for _ in range(clients)))
        deadline = time.monotonic() + 20
        while len(outcomes) < 20:
            assert time.monotonic() < deadline, "the load does not get going"
            await asyncio.sleep(0.001)
        # NOTE: a worker seen running may be between two batches, holding none. Stopped for 0.2 s under
        # this load, it holds one for certain: the batch it was running, or the one handed to it since.
        os.kill(victim, signal.SIGSTOP)
        await asyncio.sleep(0.2)
        assert process_state(victim) == "T", "the victim did not stop"
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # Ready again: two live workers, the victim replaced, counted, and /readyz says so.
        while not (
            len(now := worker_pids(server.proc.pid)) == 2
            and victim not in now
            and await ready(http)
            and sample(await asyncio.to_thread(scrape, server.url), "textclf_pool_worker_restarts_total") == 1
        ):
            assert time.monotonic() - killed_at < 2.0, "not ready again within 2 s of the kill"
            await asyncio.sleep(0.02)
        recovered_in = time.monotonic() - killed_at
        await asyncio.wait_for(load, 60)

    failed = [o for o in outcomes if o.status != 200]
    print(f"killed worker {victim}: ready again in {recovered_in:.2f} s; {len(failed)} of {len(outcomes)} failed")
    assert recovered_in < 2.0
    assert not pid_alive(victim)
    assert len(outcomes) == clients * per_client  # the load completed
    assert {o.status for o in failed} <= {503}, failed
    assert all(o.body["error"] == "model_unavailable" for o in failed), failed
    # NOTE: only what the dead worker held fails: one batch, so at most one request per client.
    assert 1 <= len(failed) <= clients, failed
    assert all(o.started < killed_at + 2.0 for o in failed), "failures after the replacement"
    assert all(o.body == {"labels": BATCH_LABELS} for o in outcomes if o.status == 200)


# ---- SIGTERM under load --------------------------------------------------------------------------------


async def test_sigterm_under_load_finishes_what_is_in_flight_and_exits_0_within_the_grace(
    servers: Callable[[dict[str, str]], ServerProcess],
) -> None:
    grace = 10.0
    server = servers({"WORKERS": "2", "SHUTDOWN_GRACE_SECONDS": str(grace), "MAX_BODY_BYTES": str(8 * 1024 * 1024)})
    slow_batch = {"texts": ["the goalie stopped the puck in overtime " * 300] * 256}  # about 3 MB, 256 texts
    steady: list[Outcome] = []
    stop_steady = asyncio.Event()

    async def steady_client(http: aiohttp.ClientSession) -> None:
        while not stop_steady.is_set() and len(steady) < 2000:
            outcome = await send(http, server.url + "/prediction", {"text": "NASA launched the shuttle into orbit"})
            steady.append(outcome)
            if outcome.status == 0:
                return  # the server is gone for this client
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        steady_load = asyncio.gather(*(steady_client(http) for _ in range(4)))
        deadline = time.monotonic() + 10
        while len(steady) < 40:
            assert time.monotonic() < deadline, "the steady load does not get going"
            await asyncio.sleep(0.01)
        # NOTE: three batches of 256 texts stay under MAX_PENDING (2048) with the steady load beside them.
        in_flight = [asyncio.create_task(send(http, server.url + "/predictions", slow_batch)) for _ in range(3)]
        # Every slow request is inside the service (the in-flight gauge counts this scrape too).
        while sample(await asyncio.to_thread(scrape, server.url), "textclf_http_requests_in_flight") < 3 + 1:
            assert time.monotonic() < deadline, "the slow requests never got in"
            await asyncio.sleep(0.01)
        helpers = descendants(server.proc.pid)  # the forkserver, the workers, the resource tracker
        server.proc.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        slow = await asyncio.gather(*in_flight)
        stop_steady.set()
        await asyncio.wait_for(steady_load, 30)

    code = await asyncio.to_thread(server.proc.wait, grace + 5)
    exited_in = time.monotonic() - signalled_at
    output = server.stop()
    before = [o for o in steady if o.started < signalled_at - 0.05]
    after = [o for o in steady if o.started >= signalled_at - 0.05]
    print(
        f"SIGTERM: exit {code} after {exited_in:.2f} s; in flight: {[o.status for o in slow]}; steady load before: "
        f"{Counter(o.status for o in before)}, after: {Counter(o.status or o.error.split(':')[0] for o in after)}"
    )
    assert [o.status for o in slow] == [200] * len(in_flight), (
        [o.body for o in slow if o.status != 200],
        output[-3000:],
    )
    assert all(o.body["labels"] == ["hockey"] * 256 for o in slow)
    assert code == 0, output[-3000:]
    assert exited_in < grace, exited_in
    assert "draining" in output
    assert before, "no steady load before SIGTERM"
    assert {o.status for o in before} == {200}, before
    # After SIGTERM: answered (200, or 503 while stopping) or refused; never a hang or a 500.
    assert {o.status for o in after} <= {0, 200, 503}, after
    assert all(o.seconds < 10 for o in after), after
    assert not any("Timeout" in o.error for o in after), after
    # The forkserver and the resource tracker exit when they see the server's end of their pipes close.
    wait_for(lambda: all(gone(pid) for pid in helpers), within=5)


# ---- overload far beyond the queue bound -------------------------------------------------------------


async def test_overload_sheds_fast_503s_with_retry_after_keeps_memory_bounded_and_recovers(
    servers: Callable[[dict[str, str]], ServerProcess],
) -> None:
    max_pending, concurrency, waves = 8, 400, 3
    server = servers({"WORKERS": "1", "MAX_PENDING": str(max_pending), "LOG_FORMAT": "text", "ACCESS_LOG": "false"})
    baseline_rss = tree_rss_bytes(server.proc.pid)
    peak_rss = baseline_rss
    sampling = True

    async def sample_rss() -> None:
        nonlocal peak_rss
        while sampling:
            peak_rss = max(peak_rss, tree_rss_bytes(server.proc.pid))
            await asyncio.sleep(0.05)

    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT, connector=connector) as http:
        sampler = asyncio.create_task(sample_rss())
        started = time.monotonic()
        for _ in range(waves):
            outcomes += await asyncio.gather(
                *(send(http, server.url + "/prediction", {"text": text}) for text in list(TEXTS) * (concurrency // 4))
            )
        flood_seconds = time.monotonic() - started
        sampling = False
        await sampler

        shed = [o for o in outcomes if o.status == 503]
        served = [o for o in outcomes if o.status == 200]
        print(
            f"overload: {len(outcomes)} requests in {flood_seconds:.2f} s: {len(served)} served, {len(shed)} shed "
            f"(median {statistics.median(o.seconds for o in shed) * 1000:.0f} ms, "
            f"max {max(o.seconds for o in shed) * 1000:.0f} ms); RSS {baseline_rss / 2**20:.0f} -> "
            f"{peak_rss / 2**20:.0f} MiB"
        )
        assert len(outcomes) == concurrency * waves
        assert not [o for o in outcomes if o.status not in (200, 503)], "errors or timeouts"
        assert len(shed) > len(outcomes) / 2, f"{len(shed)} of {len(outcomes)} shed: the bound did not bite"
        assert served, "nothing served during the flood"
        assert {o.retry_after for o in shed} == {"1"}
        assert {o.body["error"] for o in shed} == {"overloaded"}
        assert all(o.body == {"label": TEXTS[o.sent["text"]]} for o in served)  # type: ignore[index]
        assert statistics.median(o.seconds for o in shed) < 1.0, "503s are not fast"
        assert max(o.seconds for o in outcomes) < 10, "a request waited far too long"
        assert flood_seconds < 60
        # NOTE: a bounded queue bounds memory: the flood may not grow the processes by more than this.
        assert peak_rss - baseline_rss < 100 * 1024 * 1024, (baseline_rss, peak_rss)

        # Full service resumes as soon as the load drops.
        samples = scrape(server.url)
        assert total(samples, "textclf_rejected_requests_total", reason="overloaded") == len(shed)
        assert sample(samples, "textclf_pool_worker_restarts_total") == 0
        after = [await send(http, server.url + "/prediction", {"text": text}) for text in list(TEXTS) * 5]
        assert [o.status for o in after] == [200] * len(after)
        assert [o.body for o in after] == [{"label": label} for label in TEXTS.values()] * 5
        async with http.get(server.url + "/readyz") as response:
            assert response.status == 200
