"""``python -m bench.run``: ceilings, floor, load, shedding, cold start, memory and scaling of the service, in one run.

Prints the tables and the targets (PASS/MISS), and writes ``bench/RESULTS.md`` and
``bench/results.png``. ``--smoke`` runs every step for about 2 s and writes to ``bench/out/``
instead, judging nothing about speed: it fails (exit 1) only if a step produced no numbers.
``--soak`` holds half the maximum throughput for 10 minutes and reports memory growth.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench import machine, steps
from bench.cpu import wait_until_quiet
from bench.data import write_batch_bodies, write_single_bodies, write_v2_bodies
from bench.paths import BENCH, OUT
from bench.plot import plot
from bench.report import SOAK_HEADING, render
from bench.results import BATCH_CONNECTIONS, BATCH_SIZE, Results
from bench.soak import SOAK_SECONDS, run_soak
from bench.targets import check
from bench.wrk import ensure_wrk
from function.cgroup import available_cpus
from function.settings import Settings

FULL_SECONDS = 12.0
SMOKE_SECONDS = 2.0
#: Rounds of the throughput target's three figures after the main pass (about 45 s each).
EXTRA_ROUNDS = 2
#: Load steps disturbed by other processes are repeated, at most this many times per run (~13 s each).
REPEAT_BUDGET = 6


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="about 2 s per step; write to bench/out/; no speed checks")
    mode.add_argument("--soak", action="store_true", help="10 minutes at half the maximum throughput (make soak)")
    parser.add_argument("--soak-seconds", type=float, default=SOAK_SECONDS, help="soak duration (short trials)")
    parser.add_argument("--seconds", type=float, help="seconds per load step (default 12, smoke 2)")
    parser.add_argument("--wrk-threads", type=int, default=1, choices=(1, 2), help="wrk threads")
    parser.add_argument("--out", type=Path, help="where to write the report (default bench/, smoke bench/out/)")
    parser.add_argument(
        "--quiet-wait", type=float, help="seconds to wait for an idle machine before starting (default 60, smoke 0)"
    )
    return parser.parse_args(argv)


def effective_settings() -> dict[str, str]:
    """The service knobs in force for this run (the environment is passed to every server)."""
    s = Settings.from_env(os.environ)
    return {
        "WORKERS": "2 (1 to the CPUs available in the scaling step)",
        "EVENT_LOOP": s.event_loop,
        "BATCH_MAX_SIZE": str(s.batch_max_size),
        "MAX_PENDING": str(s.max_pending),
        "ACCESS_LOG": str(s.access_log).lower(),
        "LOG_FORMAT": s.log_format,
    }


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def smoke_failures(r: Results) -> list[str]:
    """What a smoke run must have produced: numbers from every step."""
    missing = []
    if r.model_ceiling is None or r.model_ceiling.docs <= 0:
        missing.append("model-only ceiling: no documents classified")
    if r.http_ceiling is None or r.http_ceiling.ok <= 0:
        missing.append("HTTP-only ceiling: no 2xx answers")
    if r.floor is None or r.floor.ok <= 0:
        missing.append("floor (bench.floor_server): no 2xx answers")
    for connections in (1, 16, 64, 256):
        if connections not in r.service or r.service[connections].ok <= 0:
            missing.append(f"service at {connections} conns: no 2xx answers")
    for connections in BATCH_CONNECTIONS:
        if connections not in r.batch or r.batch[connections].ok <= 0:
            missing.append(f"batch endpoint at {connections} conns: no 2xx answers")
    if r.overload is None or r.overload.load.requests <= 0:
        missing.append("load shedding: no answers")
    if len(r.cold_starts) == 0:
        missing.append("cold start: no sample")
    if not r.memory or not r.memory_at_end:
        missing.append("memory: no process measured")
    for workers in steps.worker_counts(r.cpus):
        point = r.scaling.get(workers)
        if point is None or point.service.ok <= 0 or point.model is None or point.model.docs <= 0:
            missing.append(f"worker scaling: WORKERS={workers} not measured")
    if not r.extra_rounds or r.extra_rounds[-1].service.ok <= 0:
        missing.append("repeated rounds: no 2xx answers")
    return missing


def preserved_soak(path: Path) -> str:
    """The Soak section of an earlier RESULTS.md (a separate, longer run), to keep when rewriting it."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    start = text.find("\n" + SOAK_HEADING + "\n")
    return text[start + 1 :].rstrip() + "\n" if start >= 0 else ""


def write_outputs(r: Results, out_dir: Path, report: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    results_md = out_dir / "RESULTS.md"
    soak = preserved_soak(results_md)
    results_md.write_text(report + ("\n" + soak if soak else ""))
    if r.service:
        plot(r, out_dir / "results.png")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"results-{r.mode}.json").write_text(json.dumps(dataclasses.asdict(r), indent=1, default=str))
    print(f"wrote {results_md}" + (f" and {out_dir / 'results.png'}" if r.service else ""), flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`, which stops the servers


def benchmark(args: argparse.Namespace) -> int:
    seconds = args.seconds or (SMOKE_SECONDS if args.smoke else FULL_SECONDS)
    ctx = steps.Context(
        out=OUT,
        seconds=seconds,
        warm_up=1.0 if args.smoke else 2.0,
        wrk_threads=args.wrk_threads,
        single_bodies=write_single_bodies(OUT / "bodies-single.jsonl"),
        batch_bodies=write_batch_bodies(OUT / f"bodies-batch-{BATCH_SIZE}.jsonl", BATCH_SIZE),
        v2_bodies=write_v2_bodies(OUT / "bodies-v2.jsonl"),
        cold_runs=2 if args.smoke else 5,
        extra_rounds=1 if args.smoke else EXTRA_ROUNDS,
        retries=steps.RetryBudget(0 if args.smoke else REPEAT_BUDGET),
    )
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.smoke else 60.0)
    if quiet_wait:
        steps.say(f"waiting up to {quiet_wait:.0f} s for the machine to be idle")
    busy = wait_until_quiet(quiet_wait)
    r = Results(
        mode="smoke" if args.smoke else "full",
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        machine=machine.describe(),
        load_average=f"{load_average()}; {busy:.0%} of the CPU busy in the 2 s before the first step",
        settings=effective_settings(),
        seconds_per_step=seconds,
        wrk_threads=args.wrk_threads,
        cpus=available_cpus(),
    )
    began = time.monotonic()
    for name, step in steps.STEPS:
        try:
            step(ctx, r)
        except Exception as exc:
            traceback.print_exc()
            r.failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    steps.say(f"all steps done in {time.monotonic() - began:.0f} s ({ctx.retries.used} disturbed step(s) repeated)")
    r.repeated_steps = ctx.retries.used
    if args.smoke:
        r.failures += smoke_failures(r)
    targets = check(r)
    report = render(r, targets)
    print("\n" + report, flush=True)
    out_dir = args.out or (OUT if args.smoke or r.failures else BENCH)
    write_outputs(r, out_dir, report)
    if not args.smoke:
        print("targets: " + ", ".join(f"{t.name}: {t.verdict}" for t in targets))
    if r.failures:
        print("FAILED steps:\n" + "\n".join(f"  {f}" for f in r.failures), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    ensure_wrk()
    try:
        if args.soak:
            return run_soak(args.soak_seconds, args.wrk_threads, args.out)
        return benchmark(args)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
