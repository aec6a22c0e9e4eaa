"""``python -m bench.curve``: one pod's throughput and latency against the requests in flight.

Starts the service as one pod of ``knative/service.yaml`` runs it (``WORKERS=2``), warms it up,
then holds each concurrency of ``CONCURRENCIES`` with wrk (closed loop: ``c`` connections, each
sending its next request when its answer arrives) and records throughput, p50, p99 and the
non-2xx answers. Rounds alternate the order (ascending, then descending) and each point keeps
the round in which other processes took the least CPU, since the machine is shared. Writes
``bench/curve.json``: the per-pod curve behind the autoscaling settings (``bench/AUTOSCALE.md``,
``knative/DEPLOY.md``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import machine, servers
from bench.cpu import measured
from bench.data import write_single_bodies
from bench.paths import BENCH, OUT
from bench.wrk import ensure_wrk, run_wrk

CONCURRENCIES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256)
WORKERS = 2
DEFAULT_SECONDS = 5.0
SMOKE_SECONDS = 1.0
WARM_UP_CONNECTIONS = 16
SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Point:
    """One concurrency held for a few seconds: what the pod did."""

    concurrency: int
    rps: float  # 2xx answers per second
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    others_cpu_share: float  # CPU of processes outside the server and wrk, in cores


def measure_point(server: servers.ServerProcess, bodies: Path, concurrency: int, seconds: float) -> Point:
    """Hold ``concurrency`` connections for ``seconds`` against ``POST /prediction``."""
    time.sleep(SETTLE_SECONDS)
    result, cpu = measured(
        server.pid, lambda: run_wrk(server.url + "/prediction", bodies, concurrency, seconds, threads=1)
    )
    return Point(
        concurrency=concurrency,
        rps=round(result.ok_rps, 1),
        p50_ms=round(result.latency_ms["p50"], 3),
        p99_ms=round(result.latency_ms["p99"], 3),
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        others_cpu_share=round(cpu.others / cpu.wall, 3) if cpu.wall > 0 else 0.0,
    )


def least_disturbed(rounds: Sequence[Sequence[Point]]) -> list[Point]:
    """Per concurrency, the point of the round in which other processes took the least CPU."""
    by_concurrency: dict[int, list[Point]] = {}
    for points in rounds:
        for point in points:
            by_concurrency.setdefault(point.concurrency, []).append(point)
    return [min(points, key=lambda p: p.others_cpu_share) for _, points in sorted(by_concurrency.items())]


def measure_curve(seconds: float, rounds: int, concurrencies: Sequence[int], log_dir: Path) -> list[Point]:
    """Every concurrency, ``rounds`` times in alternating order, against one warmed-up server."""
    bodies = write_single_bodies(OUT / "bodies-single.jsonl")
    with servers.ServerProcess({"WORKERS": str(WORKERS)}, log_path=log_dir / "curve.log") as server:
        run_wrk(server.url + "/prediction", bodies, WARM_UP_CONNECTIONS, max(1.0, seconds), threads=1)
        done: list[list[Point]] = []
        for number in range(rounds):
            order = list(concurrencies) if number % 2 == 0 else list(reversed(concurrencies))
            points = []
            for concurrency in order:
                point = measure_point(server, bodies, concurrency, seconds)
                print(
                    f"[curve] round {number + 1}: {concurrency:>3} in flight: {point.rps:7.0f} req/s, "
                    f"p50 {point.p50_ms:.2f} ms, p99 {point.p99_ms:.2f} ms, non-2xx {point.non_2xx}, "
                    f"others {point.others_cpu_share:.0%} of a core",
                    flush=True,
                )
                points.append(point)
            done.append(points)
    return least_disturbed(done)


def document(points: Sequence[Point], seconds: float, rounds: int, command: str) -> dict[str, object]:
    """What ``bench/curve.json`` holds: the points and how they were taken."""
    return {
        "what": (
            f"one service process (WORKERS={WORKERS}, the pod of knative/service.yaml) under wrk's closed loop "
            "on POST /prediction with the test texts; wrk shares the machine's cores with the service"
        ),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine.describe(),
        "seconds_per_point": seconds,
        "rounds": rounds,
        "points": [asdict(p) for p in points],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help=f"seconds per point (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_SECONDS:g} s points, one round")
    parser.add_argument("--rounds", type=int, help="rounds in alternating order (default 2, smoke 1)")
    parser.add_argument("--out", type=Path, default=BENCH / "curve.json")
    args = parser.parse_args(argv)
    seconds = args.seconds or (SMOKE_SECONDS if args.smoke else DEFAULT_SECONDS)
    rounds = args.rounds or (1 if args.smoke else 2)
    ensure_wrk()
    points = measure_curve(seconds, rounds, CONCURRENCIES, OUT / "logs")
    if not points or any(p.rps <= 0 for p in points):
        print("a point produced no 2xx answers", file=sys.stderr)
        return 1
    command = "python -m bench.curve " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document(points, seconds, rounds, command.strip()), indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
