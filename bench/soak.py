"""``python -m bench.run --soak``: half the maximum throughput for 10 minutes; errors and memory growth.

wrk has no rate limit (wrk2's ``-R`` is not packaged), so the rate is set by concurrency: in a
closed loop each connection has one request in flight, and a probe finds the smallest number of
connections whose throughput reaches half the maximum (measured just before, at 64 connections).
A Python client with a token bucket would hold an exact rate, but it would need a good part of a
core on this 2-core machine, stealing more from the server than wrk does. Total RSS of the
server's process tree is sampled every 10 s; the run passes with zero errors and at most 5%
RSS growth after the first minute.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench import servers
from bench.data import write_single_bodies
from bench.paths import BENCH, OUT
from bench.procs import total_rss_mb, tree_memory
from bench.report import LOAD_HEADER, SOAK_HEADING, load_row
from bench.steps import say
from bench.tables import markdown_table
from bench.wrk import WrkResult, finish_wrk, run_wrk, start_wrk

SOAK_SECONDS = 600.0
SAMPLE_SECONDS = 10.0
SETTLE_SECONDS = 60.0  # memory growth is measured from here (shorter for trials)
MAX_GROWTH = 0.05
MAX_PROBE_SECONDS = 5.0
PROBE_SECONDS = 3.0
PROBE_CONNECTIONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def pick_connections(server: servers.ServerProcess, bodies: Path, goal: float, threads: int) -> tuple[int, list[str]]:
    """The connection count whose closed-loop throughput is nearest ``goal``, and the probe's lines."""
    tried: list[tuple[int, float]] = []
    for connections in PROBE_CONNECTIONS:
        rps = run_wrk(server.url + "/prediction", bodies, connections, PROBE_SECONDS, threads).ok_rps
        tried.append((connections, rps))
        if rps >= goal:
            break
    best = min(tried, key=lambda t: abs(t[1] - goal))[0]
    return best, [f"{c} conns: {rps:.0f}/s" for c, rps in tried]


def sample_memory(
    server: servers.ServerProcess, load: subprocess.Popen[str], seconds: float
) -> list[tuple[float, float]]:
    """(seconds since start, total RSS MB) every SAMPLE_SECONDS while the load runs; bounded in time."""
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    deadline = started + seconds + 30
    next_at = started
    while time.monotonic() < deadline:
        if time.monotonic() >= next_at:
            samples.append((time.monotonic() - started, total_rss_mb(tree_memory(server.pid))))
            next_at += SAMPLE_SECONDS
        if load.poll() is not None:
            break
        time.sleep(0.2)
    return samples


def growth(samples: list[tuple[float, float]], settle: float) -> tuple[float, float, float]:
    """(RSS at the end of the settling time, the highest RSS after it, relative growth)."""
    after = [(t, mb) for t, mb in samples if t >= settle]
    if not after:
        after = samples[-1:]
    base = after[0][1]
    peak = max(mb for _, mb in after)
    return base, peak, (peak - base) / base


def render(
    seconds: float,
    connections: int,
    probe: list[str],
    max_rps: float,
    load: WrkResult,
    samples: list[tuple[float, float]],
) -> tuple[str, bool]:
    settle = min(SETTLE_SECONDS, seconds / 6)
    base, peak, grown = growth(samples, settle)
    errors = load.non_2xx + load.socket_errors
    passed = errors == 0 and grown <= MAX_GROWTH
    series = ", ".join(f"{t:.0f}s {mb:.1f}" for t, mb in samples)
    text = "\n".join(
        [
            SOAK_HEADING,
            "",
            f"`python -m bench.run --soak` at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {seconds:.0f} s of "
            f"POST /prediction at {connections} closed-loop connections, chosen as nearest half the maximum "
            f"({max_rps:.0f}/s at 64 connections; probe: {'; '.join(probe)}). wrk has no rate limit, so the "
            "rate is set by the number of connections; see `bench/soak.py`.",
            "",
            markdown_table(LOAD_HEADER, [load_row(f"{connections} conns, {seconds:.0f} s", load)]),
            "",
            f"Total RSS of the process tree (MB), every {SAMPLE_SECONDS:.0f} s: {series}.",
            "",
            f"**{'PASS' if passed else 'MISS'}**: {errors} errors; RSS {base:.1f} MB after {settle:.0f} s, "
            f"peak {peak:.1f} MB afterwards: {grown:+.1%} (limit +{MAX_GROWTH:.0%}).",
            "",
        ]
    )
    return text, passed


def write_section(path: Path, section: str) -> None:
    """Replace the Soak section of ``path`` (or append one)."""
    try:
        text = path.read_text()
    except OSError:
        text = ""
    start = text.find("\n" + SOAK_HEADING + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(SOAK_HEADING) + 2)
        text = text[: start + 1] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = (text.rstrip() + "\n\n" if text else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def run_soak(seconds: float, threads: int, out: Path | None) -> int:
    bodies = write_single_bodies(OUT / "bodies-single.jsonl")
    with servers.ServerProcess({"WORKERS": "2"}, log_path=OUT / "logs" / "soak.log") as server:
        say("soak: finding the maximum throughput and the connections for half of it")
        run_wrk(server.url + "/prediction", bodies, 16, 2, threads)
        max_rps = run_wrk(server.url + "/prediction", bodies, 64, MAX_PROBE_SECONDS, threads).ok_rps
        connections, probe = pick_connections(server, bodies, max_rps / 2, threads)
        say(f"soak: {seconds:.0f} s at {connections} conns (max {max_rps:.0f}/s; {'; '.join(probe)})")
        proc = start_wrk(server.url + "/prediction", bodies, connections, seconds, threads)
        try:
            samples = sample_memory(server, proc, seconds)
            load = finish_wrk(proc, connections, threads, timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    section, passed = render(seconds, connections, probe, max_rps, load, samples)
    print("\n" + section, flush=True)
    full = seconds >= SOAK_SECONDS  # a short trial does not replace the real soak's result
    target = (out or (BENCH if full else OUT)) / ("RESULTS.md" if full else "SOAK.md")
    write_section(target, section)
    print(f"wrote {target}")
    return 0 if passed else 1
