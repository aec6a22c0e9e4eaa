"""``python -m bench.compare``: the service's throughput under different settings, side by side.

Each variant is a fresh ``python -m function`` (WORKERS=2 unless the variant says otherwise)
with a few environment variables changed, driven by wrk exactly as ``bench.run`` drives it.
Variants run in rounds (every variant once per round, in turn) and the table shows the median
over rounds, so that drift on a shared machine falls on every variant alike; the "others CPU"
column shows how much CPU strangers took meanwhile. Writes ``bench/out/COMPARE.md`` (scratch).

    python -m bench.compare                                  # the built-in variants
    python -m bench.compare --variant "ACCESS_LOG=false EVENT_LOOP=asyncio" --connections 64 256
    python -m bench.compare --revision e694040 --rounds 5    # this checkout against a commit

A revision is checked out (``git worktree``) under ``bench/out/revisions/`` and served from
there with the default settings, so a code change is compared exactly like a setting.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import machine, servers
from bench.cpu import CpuUse, measured
from bench.data import write_single_bodies
from bench.paths import OUT, ROOT
from bench.steps import say
from bench.tables import markdown_table, publish
from bench.wrk import WrkResult, ensure_wrk, run_wrk

DEFAULT = "default"
VARIANTS = (
    "ACCESS_LOG=false",
    "EVENT_LOOP=asyncio",
    "BATCH_MAX_SIZE=1",
    "BATCH_MAX_SIZE=8",
    "BATCH_MAX_SIZE=128",
    "WORKERS=1",
    "WORKERS=3",
)
Run = tuple[WrkResult, CpuUse]


REVISION = "@"  # a variant "@<revision>" is that commit's code with the default settings


def checkout(revision: str) -> Path:
    """A detached worktree of ``revision`` under bench/out/revisions/ (reused if present)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", revision + "^{commit}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = OUT / "revisions" / sha[:12]
    if not (path / "function").is_dir():
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha], cwd=ROOT, check=True)
    return path


def parse_env(variant: str) -> dict[str, str]:
    if variant == DEFAULT or variant.startswith(REVISION):
        return {"WORKERS": "2"}
    pairs = [item.split("=", 1) for item in variant.split()]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"a variant is KEY=VALUE pairs separated by spaces, not {variant!r}")
    return {"WORKERS": "2"} | {k: v for k, v in pairs}


def run_variant(
    variant: str, connections: Sequence[int], seconds: float, bodies: Path, threads: int
) -> tuple[float, list[Run]]:
    """Seconds from creating the server process to its readiness, and one run per connection count."""
    say(variant)
    log = OUT / "logs" / f"compare-{variant.replace(' ', '_').replace('=', '-').replace('/', '-')}.log"
    runs = []
    cwd = checkout(variant[len(REVISION) :]) if variant.startswith(REVISION) else ROOT
    with servers.ServerProcess(parse_env(variant), log_path=log, cwd=cwd) as server:
        ready = time.perf_counter() - server.started
        url = server.url + "/prediction"
        run_wrk(url, bodies, 16, 2, threads)  # warm-up
        for c in connections:
            load, cpu = measured(server.pid, functools.partial(run_wrk, url, bodies, c, seconds, threads))
            say(f"  {c} conns: {load.ok_rps:.0f} 2xx/s, p99 {load.latency_ms['p99']:.1f} ms")
            runs.append((load, cpu))
    return ready, runs


def row(variant: str, connections: int, runs: list[Run], ready: list[float], baseline: float) -> list[str]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    rps = [load.ok_rps for load, _ in runs]
    per_request = [(cpu, max(1, load.requests)) for load, cpu in runs]
    return [
        variant,
        str(connections),
        f"{med(rps):.0f}",
        f"{min(rps):.0f}–{max(rps):.0f}",
        f"{med(rps) / baseline:.2f}x" if baseline else "n/a",
        f"{med([load.latency_ms['p50'] for load, _ in runs]):.1f}",
        f"{med([load.latency_ms['p99'] for load, _ in runs]):.1f}",
        str(sum(load.non_2xx + load.socket_errors for load, _ in runs)),
        f"{med([cpu.server / n * 1e6 for cpu, n in per_request]):.0f}",
        f"{med([cpu.workers / n * 1e6 for cpu, n in per_request]):.0f}",
        f"{med([cpu.server / cpu.wall for _, cpu in runs]):.0%}",
        f"{max(cpu.others / cpu.wall for _, cpu in runs):.0%}",
        f"{med(ready):.2f}",
    ]


def render(rows: list[list[str]], seconds: float, threads: int, rounds: int) -> str:
    header = ["variant", "conns", "2xx/s (median)", "range", "vs default", "p50 ms", "p99 ms", "errors",
              "event loop µs/req", "workers µs/req", "event loop CPU", "others CPU (max)", "ready s"]  # fmt: skip
    return "\n".join(
        [
            "# Settings compared",
            "",
            f"Machine: {machine.describe()}. `python -m bench.compare`: each variant is a fresh "
            "(`default`: this checkout's code and settings; `@REV`: commit REV's code) "
            f"`python -m function` (WORKERS=2 unless stated) under wrk ({threads} thread, closed loop, "
            f"{seconds:.0f} s per step after a 2 s warm-up) on the same 2 cores; {rounds} round(s), every "
            "variant once per round; medians over rounds. CPU columns: the server process (event loop and "
            "its executor threads) and the workers, per answered request; the event loop's share of one "
            "core; and the most CPU that processes other than the service and wrk took during a step "
            '(interference). "ready s": from creating the process to its readiness (every worker warm), '
            "polled every 20 ms: each round's fresh start is a cold start.",
            "",
            markdown_table(header, rows),
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", help="KEY=VALUE ... (repeatable; default: built-in list)")
    parser.add_argument("--revision", action="append", default=[], help="a git commit to compare (repeatable)")
    parser.add_argument("--connections", type=int, nargs="+", default=[64])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wrk-threads", type=int, default=1, choices=(1, 2))
    parser.add_argument("--out", type=Path, default=OUT / "COMPARE.md")
    args = parser.parse_args(argv)
    ensure_wrk()
    bodies = write_single_bodies(OUT / "bodies-single.jsonl")
    revisions = [REVISION + r for r in args.revision]
    variants = [DEFAULT, *(args.variant or ([] if revisions else VARIANTS)), *revisions]
    runs: dict[str, list[list[Run]]] = {v: [] for v in variants}
    ready: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.rounds):
        say(f"round {i + 1} of {args.rounds}")
        for variant in variants:
            seconds, variant_runs = run_variant(variant, args.connections, args.seconds, bodies, args.wrk_threads)
            ready[variant].append(seconds)
            runs[variant].append(variant_runs)
    rows = []
    for j, c in enumerate(args.connections):
        baseline = statistics.median(r[j][0].ok_rps for r in runs[DEFAULT])
        rows += [row(v, c, [r[j] for r in runs[v]], ready[v], baseline) for v in variants]
    report = render(rows, args.seconds, args.wrk_threads, args.rounds)
    publish(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
