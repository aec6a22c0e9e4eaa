"""The load generator: wrk (closed loop) with ``post_texts.lua``, its summary parsed from JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.paths import LUA_SCRIPT

#: wrk counts a request that takes longer than this as a timeout (a socket error).
TIMEOUT_SECONDS = 2
_MARKER = "BENCH_JSON "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


def ensure_wrk() -> str:
    """The path of ``wrk``; installs the Debian package (``apt-get install -y wrk``) if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise WrkError("wrk is not installed; install it (Debian/Ubuntu: sudo apt-get install -y wrk)")
    print("wrk not found: apt-get update && apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        timeout=300,
        env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("wrk")
    if not found:
        raise WrkError("apt-get install wrk did not provide a wrk binary")
    return found


@dataclass(frozen=True)
class WrkResult:
    connections: int
    threads: int
    requests: int
    seconds: float
    errors: dict[str, int]  # connect, read, write, status (HTTP >= 400), timeout
    latency_ms: dict[str, float]  # min, mean, stdev, p50, p90, p99, p999, max
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def ok_rps(self) -> float:
        return self.ok / self.seconds

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def overloaded(self) -> int:
        return self.statuses.get(503, 0)

    @property
    def socket_errors(self) -> int:
        return sum(self.errors[k] for k in ("connect", "read", "write", "timeout"))


def parse(output: str, connections: int, threads: int) -> WrkResult:
    """The summary line that ``post_texts.lua``'s ``done`` prints."""
    for line in output.splitlines():
        if line.startswith(_MARKER):
            data = json.loads(line[len(_MARKER) :])
            return WrkResult(
                connections=connections,
                threads=threads,
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                errors={k: int(v) for k, v in data["errors"].items()},
                latency_ms={k: v / 1e3 for k, v in data["latency_us"].items()},
                statuses={int(k): int(v) for k, v in data["statuses"].items()},
            )
    raise WrkError(f"wrk printed no summary:\n{output}")


def command(url: str, bodies: Path, connections: int, seconds: float, threads: int) -> list[str]:
    return [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={TIMEOUT_SECONDS}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies),
    ]


def run_wrk(url: str, bodies: Path, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """Closed-loop load for ``seconds`` (bounded: wrk is killed 30 s after it should have ended)."""
    threads = max(1, min(threads, connections))
    args = command(url, bodies, connections, seconds, threads)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=False)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish in {seconds + 30:.0f} s") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout, connections, threads)


def start_wrk(url: str, bodies: Path, connections: int, seconds: float, threads: int = 1) -> subprocess.Popen[str]:
    """Start wrk in the background (the soak samples memory meanwhile); ``finish_wrk`` reads it."""
    threads = max(1, min(threads, connections))
    args = command(url, bodies, connections, seconds, threads)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(proc: subprocess.Popen[str], connections: int, threads: int, timeout: float) -> WrkResult:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise WrkError(f"wrk did not finish in {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}:\n{out}\n{err}")
    return parse(out, connections, max(1, min(threads, connections)))
