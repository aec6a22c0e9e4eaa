"""The steps of ``python -m bench.run``; each fills its part of ``Results`` and stops what it started."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bench import servers
from bench.ceiling import model_ceiling
from bench.coldstart import cold_starts
from bench.cpu import measured
from bench.paths import MODEL_DIR
from bench.probe import Probe
from bench.procs import tree_memory
from bench.results import (
    BATCH_CONNECTIONS,
    BATCH_SIZE,
    HEAVY_CONNECTIONS,
    LOAD_CONNECTIONS,
    OVERLOAD_MAX_PENDING,
    QUIET_SECONDS,
    TARGET_CONNECTIONS,
    V2_STEP,
    OverloadResult,
    RatioRound,
    Results,
    ScalingPoint,
    StepCost,
    service_step,
)
from bench.scrape import batching, scrape
from bench.wrk import WrkResult, run_wrk

SERVICE_WORKERS = 2
#: The Open Inference Protocol's infer route for the committed model.
V2_INFER = "/v2/models/{name}/infer".format(**json.loads((MODEL_DIR / "model.json").read_bytes()))
WARM_UP_CONNECTIONS = 16
SETTLE_SECONDS = 1.0
#: Other processes' CPU (share of one core) above which a step counts as disturbed.
NOISY_SHARE = 0.25
MAX_REPEATS_PER_STEP = 2
#: The model-only ceiling beside each worker count of the scaling step (shorter than a load step).
SCALING_MODEL_SECONDS = 6.0


class RetryBudget:
    """How many disturbed load steps may still be repeated (bounds the run's duration)."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.used = 0

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.used += 1
        return True


@dataclass(frozen=True)
class Context:
    out: Path  # request files and server logs
    seconds: float  # per load step
    warm_up: float
    wrk_threads: int
    single_bodies: Path
    batch_bodies: Path
    v2_bodies: Path  # the same texts as single_bodies, as Open Inference Protocol requests
    cold_runs: int
    extra_rounds: int  # repeats of the model-only, HTTP-only and 64-connection steps, back to back
    retries: RetryBudget  # repeats of load steps disturbed by other processes, for the whole run

    def log(self, name: str) -> Path:
        return self.out / "logs" / f"{name}.log"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _load(
    ctx: Context, r: Results, label: str, server: servers.ServerProcess, path: str, bodies: Path, connections: int
) -> WrkResult:
    """One load step; its CPU use (server tree and wrk) is recorded under ``label``."""
    return _costed_load(ctx, r, label, server, path, bodies, connections)[0]


def _costed_load(
    ctx: Context, r: Results, label: str, server: servers.ServerProcess, path: str, bodies: Path, connections: int
) -> tuple[WrkResult, StepCost]:
    """``_load``, also returning what the step cost."""
    attempts: list[tuple[WrkResult, StepCost]] = []
    for attempt in range(1 + MAX_REPEATS_PER_STEP):
        time.sleep(SETTLE_SECONDS)  # let the previous step's abandoned requests drain from the queue
        before = scrape(server.port)
        result, cpu = measured(
            server.pid, lambda: run_wrk(server.url + path, bodies, connections, ctx.seconds, ctx.wrk_threads)
        )
        attempts.append((result, StepCost(label, result.requests, cpu, batching(before, scrape(server.port)))))
        interference = cpu.others / cpu.wall
        if interference <= NOISY_SHARE or attempt == MAX_REPEATS_PER_STEP or not ctx.retries.take():
            break
        say(f"  other processes took {interference:.0%} of a core during {label}: repeating the step")
    result, cost = min(attempts, key=lambda a: a[1].cpu.others / a[1].cpu.wall)
    r.costs.append(cost)
    say(
        f"  {path} {connections:>3} conns: {result.ok_rps:7.0f} 2xx/s, p50 {result.latency_ms['p50']:.2f} ms, "
        f"p99 {result.latency_ms['p99']:.2f} ms, non-2xx {result.non_2xx}, socket errors {result.socket_errors}"
    )
    return result, cost


def _warm_up(ctx: Context, server: servers.ServerProcess) -> None:
    run_wrk(server.url + "/prediction", ctx.single_bodies, WARM_UP_CONNECTIONS, ctx.warm_up, ctx.wrk_threads)


def model_only(ctx: Context, r: Results) -> None:
    say(f"model-only ceiling: {SERVICE_WORKERS} processes, {ctx.seconds:.0f} s")
    r.model_ceiling = model_ceiling(SERVICE_WORKERS, ctx.seconds)
    say(f"  {r.model_ceiling.docs_per_second:.0f} docs/s")


def _fresh_at_target(
    ctx: Context, r: Results, module: tuple[str, ...], workers: int, log_name: str, label: str
) -> WrkResult:
    """A fresh server, warmed up, then one load step of single texts at the target's connections."""
    return _fresh_costed(ctx, r, module, workers, log_name, label)[0]


def _fresh_costed(
    ctx: Context, r: Results, module: tuple[str, ...], workers: int, log_name: str, label: str
) -> tuple[WrkResult, StepCost]:
    with servers.ServerProcess({"WORKERS": str(workers)}, module, log_path=ctx.log(log_name)) as server:
        _warm_up(ctx, server)
        return _costed_load(ctx, r, label, server, "/prediction", ctx.single_bodies, TARGET_CONNECTIONS)


def http_only(ctx: Context, r: Results) -> None:
    say(f"HTTP-only ceiling: constant classifier, {TARGET_CONNECTIONS} conns")
    label = f"HTTP-only, {TARGET_CONNECTIONS} conns"
    r.http_ceiling = _fresh_at_target(ctx, r, servers.CONSTANT, SERVICE_WORKERS, "constant", label)


def floor(ctx: Context, r: Results) -> None:
    say(f"floor: the least aiohttp server (bench/floor_server.py), {TARGET_CONNECTIONS} conns")
    label = f"floor, {TARGET_CONNECTIONS} conns"
    r.floor = _fresh_at_target(ctx, r, servers.FLOOR, 1, "floor", label)


def service(ctx: Context, r: Results) -> None:
    say(f"service, WORKERS={SERVICE_WORKERS}: {', '.join(map(str, LOAD_CONNECTIONS))} conns, then the batch endpoint")
    env = {"WORKERS": str(SERVICE_WORKERS)}
    with servers.ServerProcess(env, log_path=ctx.log("service")) as server:
        _warm_up(ctx, server)
        for connections in LOAD_CONNECTIONS:
            label = service_step(connections)
            r.service[connections] = _load(ctx, r, label, server, "/prediction", ctx.single_bodies, connections)
        r.v2 = _load(ctx, r, V2_STEP, server, V2_INFER, ctx.v2_bodies, TARGET_CONNECTIONS)
        for connections in BATCH_CONNECTIONS:
            label = f"service, batch of {BATCH_SIZE}, {connections} conns"
            r.batch[connections] = _load(ctx, r, label, server, "/predictions", ctx.batch_bodies, connections)
        r.memory_at_end = tree_memory(server.pid)
        time.sleep(QUIET_SECONDS)
        r.memory = tree_memory(server.pid)


def overload(ctx: Context, r: Results) -> None:
    say(f"load shedding: MAX_PENDING={OVERLOAD_MAX_PENDING}, {HEAVY_CONNECTIONS} conns")
    env = {"WORKERS": str(SERVICE_WORKERS), "MAX_PENDING": str(OVERLOAD_MAX_PENDING)}
    with servers.ServerProcess(env, log_path=ctx.log("overload")) as server:
        _warm_up(ctx, server)
        probe = Probe(server.port)
        probe.start()
        try:
            label = f"MAX_PENDING={OVERLOAD_MAX_PENDING}, {HEAVY_CONNECTIONS} conns"
            load = _load(ctx, r, label, server, "/prediction", ctx.single_bodies, HEAVY_CONNECTIONS)
        finally:
            probe.stop()
    r.overload = OverloadResult(OVERLOAD_MAX_PENDING, load, probe.seconds)


def worker_counts(cpus: int) -> list[int]:
    """The scaling step's worker counts: each up to 4, then doubling, then ``cpus`` (64: 1, 2, 3, 4, 8, 16, 32, 64)."""
    doubling = {1 << k for k in range(cpus.bit_length())}
    return sorted(set(range(1, min(cpus, 4) + 1)) | {n for n in doubling if n <= cpus} | {cpus})


def scaling(ctx: Context, r: Results) -> None:
    """WORKERS=1..N (N the CPUs available), each a fresh server at the target's connections,
    after the model alone in as many processes."""
    counts = worker_counts(r.cpus)
    say(f"worker scaling: WORKERS={', '.join(map(str, counts))} ({r.cpus} CPUs available), {TARGET_CONNECTIONS} conns")
    model_seconds = min(ctx.seconds, SCALING_MODEL_SECONDS)
    for workers in counts:
        model = model_ceiling(workers, model_seconds)
        say(f"  model-only, {workers} processes: {model.docs_per_second:.0f} docs/s")
        label = f"WORKERS={workers}, {TARGET_CONNECTIONS} conns"
        load, cost = _fresh_costed(ctx, r, servers.SERVICE, workers, f"workers-{workers}", label)
        r.scaling[workers] = ScalingPoint(workers, load, cost, model)


def repeated_rounds(ctx: Context, r: Results) -> None:
    """The three figures of the throughput target again, back to back, so that a drift in the
    machine's speed between the main steps shows up as spread rather than as the verdict."""
    for round_number in range(2, 2 + ctx.extra_rounds):
        say(
            f"round {round_number}: model-only, HTTP-only, floor and service at {TARGET_CONNECTIONS} conns, "
            "back to back"
        )
        model = model_ceiling(SERVICE_WORKERS, ctx.seconds)
        http = _fresh_at_target(
            ctx,
            r,
            servers.CONSTANT,
            SERVICE_WORKERS,
            f"constant-round-{round_number}",
            f"round {round_number}: HTTP-only, {TARGET_CONNECTIONS} conns",
        )
        least = _fresh_at_target(
            ctx,
            r,
            servers.FLOOR,
            1,
            f"floor-round-{round_number}",
            f"round {round_number}: floor, {TARGET_CONNECTIONS} conns",
        )
        service = _fresh_at_target(
            ctx,
            r,
            servers.SERVICE,
            SERVICE_WORKERS,
            f"service-round-{round_number}",
            f"round {round_number}: service, {TARGET_CONNECTIONS} conns",
        )
        r.extra_rounds.append(RatioRound(model.docs_per_second, http.ok_rps, least.ok_rps, service))
        last = r.extra_rounds[-1]
        say(f"  ratio {last.ratio:.2f} x ideal (floor), {last.http_ratio:.2f} x ideal (HTTP-only)")


def cold_start(ctx: Context, r: Results) -> None:
    say(f"cold start: {ctx.cold_runs} fresh starts, WORKERS={SERVICE_WORKERS}")
    r.cold_starts = cold_starts({"WORKERS": str(SERVICE_WORKERS)}, ctx.out / "logs", ctx.cold_runs)
    say("  " + ", ".join(f"{s:.2f} s" for s in r.cold_starts))


STEPS = (
    ("model-only ceiling", model_only),
    ("HTTP-only ceiling", http_only),
    ("floor", floor),
    ("service under load", service),
    ("load shedding", overload),
    ("worker scaling", scaling),
    ("repeated rounds", repeated_rounds),
    ("cold start", cold_start),
)
