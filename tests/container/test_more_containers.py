"""More containers of the image: the worker count WORKERS=0 derives from --cpus, and the memory
limit under the largest bodies."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest

from bench import http1
from bench.http1 import Connection, Cut, Outcome, Refused
from tests.container import containers
from tests.container.harness import Context, Network, Service, body_of_size, example, judge, mib, seconds, verdict

pytestmark = pytest.mark.container

WORKER_CASES = ((1.0, 1), (0.5, 1), (1.5, 2), (2.0, 2))  # --cpus -> workers that WORKERS=0 must start
MEMORY_CLIENTS = 48
MEMORY_ROUNDS = 3


async def test_workers_auto(network: Network) -> None:
    """WORKERS=0 starts 1 worker at --cpus 1 and 0.5, 2 at 1.5 and 2."""
    found = []
    problems = []
    for cpus, expected in WORKER_CASES:
        service = network.start(f"cpus{cpus:g}".replace(".", "_"), cpus=cpus, env={"WORKERS": "0"})
        try:
            if not await network.wait_ready(service):
                problems.append(f"--cpus {cpus:g}: never ready")
                continue
            pool = await network.pool(service)
            workers = len(service.container.processes()["workers"])
            configured = pool.get("textclf_pool_workers", math.nan)
            found.append(f"--cpus {cpus:g} -> {configured:g} (ready in {seconds(service.ready_at)})")
            if configured != expected or workers != expected:
                problems.append(f"--cpus {cpus:g}: {configured:g} configured, {workers} processes, expected {expected}")
        finally:
            network.remove(service)
    judge(problems, f"WORKERS=0: {', '.join(found)}")


async def test_memory(network: Network, context: Context) -> None:
    """Clients each sending bodies of MAX_BODY_BYTES at the manifest's memory limit: no OOM kill,
    no cut connection, only 200 or 503."""
    service = network.start("memory")
    try:
        await check_memory(service, network, context)
    finally:
        network.remove(service)


async def check_memory(service: Service, network: Network, context: Context) -> None:
    limit = int(context.setting("MAX_BODY_BYTES"))
    if not await network.wait_ready(service):
        verdict(False, "the container never became ready")
    cgroup = service.container.memory_cgroup()
    before = containers.oom_kills(cgroup)
    body = body_of_size(context.texts, limit)
    ip, port = service.container.ip, context.spec.port
    outcomes: list[Outcome] = []

    async def client() -> None:
        connection = Connection(ip, port, timeout=120)
        try:
            for _ in range(MEMORY_ROUNDS):
                outcome = Outcome(started=time.time())
                outcomes.append(outcome)
                try:
                    outcome.answer = await connection.request("POST", "/prediction", body)
                except (Cut, Refused) as error:
                    outcome.failure = f"{'cut' if isinstance(error, Cut) else 'refused'}: {error}"
                outcome.ended = time.time()
        finally:
            await connection.close()

    began = time.time()
    network.sample_liveness(service)
    try:
        await asyncio.gather(*(client() for _ in range(MEMORY_CLIENTS)))
    finally:
        await network.end_liveness(service)
    took = time.time() - began
    after = containers.oom_kills(cgroup)
    peak = containers.peak_memory(cgroup)
    running = service.container.state()
    pool: dict[str, float] = {}
    with contextlib.suppress(Cut, Refused):
        pool = await network.pool(service)
    restarts = pool.get("textclf_pool_worker_restarts_total", math.nan)
    cut = [o for o in outcomes if o.answer is None]
    bad = [o for o in outcomes if o.answer is not None and o.answer.status not in (200, 503)]
    problems = []
    if after - before or running.get("OOMKilled"):
        problems.append(
            f"{after - before} processes OOM-killed (memory.oom_control), OOMKilled {running.get('OOMKilled')}"
        )
    if not running["Running"]:
        problems.append(f"the container exited ({running['ExitCode']})")
    if restarts:
        problems.append(f"textclf_pool_worker_restarts_total {restarts:g}")
    if cut:
        problems.append(f"{len(cut)} requests cut, e.g. {cut[0].failure}")
    if bad:
        problems.append(f"{len(bad)} answered otherwise, e.g. {example(bad[0])}")
    judge(
        problems,
        f"{MEMORY_CLIENTS} clients x {MEMORY_ROUNDS} bodies of {len(body)} bytes (MAX_BODY_BYTES) at --memory "
        f"{mib(context.spec.memory)} in {seconds(took)}: {http1.statuses(outcomes)}; OOM kills {after - before}; "
        f"peak {mib(peak)} (cgroup); worker restarts {restarts:g}",
    )
