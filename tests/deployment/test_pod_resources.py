"""CPU and memory of the service's container: one worker per whole CPU at Guaranteed QoS, and a
memory limit with half left for bursts, measured on a real server."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from bench.procs import rss_bytes, tree
from bench.servers import ServerProcess
from function.settings import Settings
from tests.deployment.manifests import CONTAINERS, env_values, knative_container, quantity


@pytest.mark.parametrize("variant", CONTAINERS)
def test_one_worker_per_cpu_with_requests_equal_to_limits(variant: str) -> None:
    container = CONTAINERS[variant]()
    resources = container["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: the benchmark's capacity needs whole CPUs"
    assert Settings.from_env(env_values(container)).workers == quantity(resources["limits"]["cpu"])


@pytest.mark.slow
def test_the_memory_limit_leaves_half_for_bursts_after_real_requests() -> None:
    """Server, forkserver and workers, summed after a few hundred requests, use at most half the
    limit; the rest is for bursts of large bodies (DEPLOY.md has the measurements)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to measure resident memory")
    container = knative_container()
    server = ServerProcess(env={"WORKERS": env_values(container)["WORKERS"], "ACCESS_LOG": "false"})
    try:
        server.wait_ready(60)
        texts = ["The goalie stopped the puck in overtime.", "NASA launched the shuttle into orbit."] * 128
        for text in texts[:200]:
            body = json.dumps({"text": text}).encode()
            request = urllib.request.Request(server.url + "/prediction", body, {"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).read()
        batch = json.dumps({"texts": texts}).encode()
        request = urllib.request.Request(server.url + "/predictions", batch, {"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
        time.sleep(0.2)
        pids = tree(server.proc.pid)
        used = sum(rss_bytes(pid) for pid in pids)
    finally:
        server.stop()
    limit = quantity(container["resources"]["limits"]["memory"])
    workers = int(env_values(container)["WORKERS"])
    assert len(pids) >= workers + 2, f"server, forkserver and {workers} workers expected, found {len(pids)} processes"
    assert used <= limit / 2, f"{used / 2**20:.0f} MiB resident in {len(pids)} processes, limit {limit / 2**20:.0f} MiB"
