"""The image run with its entry point overridden, as a pod's `command: ["python", "-m", "function"]`
(or a buildpack's Procfile) runs it: no tini, the service is PID 1. The kernel drops any signal PID
1 has no handler for, and every orphan in the container becomes PID 1's child, to be reaped by it.
Signals come from the host, as the container runtime sends the kubelet's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bench import procs
from bench.http1 import Cut, Refused, fetch
from tests.container import containers
from tests.container.harness import Context, Network, Service, judge, seconds

pytestmark = pytest.mark.container

#: A pod's `command:` override: the image's ENTRYPOINT (tini) and CMD replaced.
COMMAND = ["python", "-m", "function"]
#: The early SIGTERM: this long after the container started (a pod deleted as it starts).
EARLY_SECONDS = 0.15
#: Sent later than this, the early check would not test what it should.
EARLY_LATEST = 0.25
FORKSERVER_DEATHS = 3
REAPED = re.compile(r"reaped (\d+) orphaned processes as PID 1")


def handles(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc/<pid>/status)."""
    caught = procs.status(pid).get("SigCgt", "0")
    return bool(int(caught, 16) >> (signum - 1) & 1)


def zombies(init: int) -> list[int]:
    """PID 1's children that have exited and that nobody has reaped."""
    return [pid for pid in procs.children(init) if procs.process_state(pid) == "Z"]


async def test_pid1_early_sigterm(network: Network) -> None:
    """A SIGTERM 0.15 s after the container started ends it at once with exit code 0."""
    service = network.start("pid1-early", command=COMMAND)
    container = service.container
    try:
        await asyncio.sleep(max(0.0, container.started_at + EARLY_SECONDS - time.time()))
        caught = handles(container.pid, signal.SIGTERM)
        sent = time.time()
        os.kill(container.pid, signal.SIGTERM)
        state = await asyncio.to_thread(containers.wait_exit, container, 5)
    finally:
        network.remove(service)
    after = sent - container.started_at
    exited = not state["Running"]
    took = containers.parse_time(state["FinishedAt"]) - sent if exited else math.nan
    problems = []
    if not exited:
        problems.append("the SIGTERM was dropped")
    elif state["ExitCode"] != 0:
        problems.append(f"exit code {state['ExitCode']}")
    elif took > 2:
        problems.append(f"exited {seconds(took)} after the SIGTERM")
    if after > EARLY_LATEST:
        problems.append(f"the SIGTERM went {seconds(after)} after the start: the check did not test what it should")
    judge(
        problems,
        f"docker run --entrypoint {COMMAND[0]} IMAGE {' '.join(COMMAND[1:])}; SIGTERM to PID 1 {seconds(after)} "
        f"after the container started (PID 1 {'had a' if caught else 'had no'} handler for it then): "
        + (f"exit code {state['ExitCode']} {seconds(took)} later" if exited else "still running 5 s later"),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pid1(network: Network, context: Context) -> AsyncIterator[Service]:
    """The service as PID 1, ready; removed after the module (its logs kept for test_json_logs)."""
    service = network.start("pid1", command=COMMAND)
    try:
        if not await network.wait_ready(service):
            pytest.fail(f"never ready; stderr: {service.container.logs()[1][-800:]!r}")
        yield service
    finally:
        network.remove(service)


async def ready_with_new_workers(network: Network, service: Service, old: set[int], within: float) -> float:
    """Seconds until /readyz answers 200 with none of the ``old`` workers left; nan if not within."""
    began = time.time()
    while time.time() - began < within:
        workers = set(service.container.processes()["workers"])
        if workers and not workers & old:
            with contextlib.suppress(Cut, Refused):
                if (await network.get(service, "/readyz")).status == 200:
                    return time.time() - began
        await asyncio.sleep(0.05)
    return math.nan


async def test_pid1_forkserver_deaths(pid1: Service, network: Network, context: Context) -> None:
    """The forkserver SIGKILLed 3 times: each time the pool recovers, and no zombie is left
    under PID 1 (its workers, orphaned, were reaped); the service then still answers."""
    init = pid1.container.pid
    within = context.setting("WORKER_START_TIMEOUT_SECONDS") + 5
    restarts_before = (await network.pool(pid1)).get("textclf_pool_worker_restarts_total", math.nan)
    rounds, problems, orphaned = [], [], 0
    for death in range(1, FORKSERVER_DEATHS + 1):
        tree = pid1.container.processes()
        old = set(tree["workers"])
        if len(tree["forkserver"]) != 1 or tree["server"] != [init]:
            problems.append(f"death {death}: expected PID 1 serving with one forkserver, found {tree}")
            break
        os.kill(tree["forkserver"][0], signal.SIGKILL)
        orphaned += len(old)
        back = await ready_with_new_workers(network, pid1, old, within)
        await asyncio.sleep(0.2)  # the last orphans' SIGCHLD handled
        left = zombies(init)
        rounds.append(f"{len(left)} zombies, ready again after {seconds(back)}")
        if math.isnan(back):
            problems.append(f"death {death}: not ready with new workers within {within:g} s")
        if left:
            problems.append(f"death {death}: zombies under PID 1 {left}")
    body = json.dumps({"text": context.texts[0]}).encode()
    answer = await fetch(pid1.container.ip, context.spec.port, "POST", "/prediction", body)
    restarts = (await network.pool(pid1)).get("textclf_pool_worker_restarts_total", math.nan) - restarts_before
    if answer.status != 200:
        problems.append(f"POST /prediction afterwards: {answer.status} {answer.body[:200]!r}")
    inside = " ".join(f"{pid}:{procs.process_state(pid)}" for pid in procs.children(init))
    judge(
        problems,
        f"forkserver SIGKILLed {FORKSERVER_DEATHS} times ({orphaned} workers orphaned): "
        + "; ".join(f"{i}: {r}" for i, r in enumerate(rounds, 1))
        + f"; textclf_pool_worker_restarts_total +{restarts:g}; POST /prediction then {answer.status}; "
        f"PID 1's children now (host pid:state) {inside}",
    )


async def test_pid1_docker_stop(pid1: Service, context: Context) -> None:
    """`docker stop` ends the service as PID 1 with exit code 0, its log free of tracebacks."""
    stop_timeout = math.ceil(context.spec.termination_grace)
    limit = context.setting("SHUTDOWN_GRACE_SECONDS") / 2
    stopped = time.time()
    await containers.adocker("stop", "-t", str(stop_timeout), pid1.container.name, within=stop_timeout + 30)
    state = pid1.container.state()
    took = containers.parse_time(state["FinishedAt"]) - stopped
    _, stderr = pid1.container.logs()
    bad = [line for line in stderr.splitlines() if "Traceback" in line or "ChildProcessError" in line]
    reaped = REAPED.search(stderr)
    problems = []
    if state["ExitCode"] != 0:
        problems.append(f"exit code {state['ExitCode']}")
    if took > limit:
        problems.append(f"exited {seconds(took)} after SIGTERM, over {limit:g} s")
    if bad:
        problems.append(f"{len(bad)} log lines with a traceback, e.g. {bad[0][:200]!r}")
    judge(
        problems,
        f"docker stop -t {stop_timeout}: exit code {state['ExitCode']} {seconds(took)} after SIGTERM (limit "
        f"{limit:g} s = SHUTDOWN_GRACE_SECONDS/2); log: "
        + (f"'{reaped.group(0)}'" if reaped else "no count of orphans reaped"),
    )
