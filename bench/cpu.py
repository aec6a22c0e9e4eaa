"""Where the CPU time of a load step goes: the event loop, the workers, the rest, and wrk itself."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.procs import FORKSERVER, SERVER, TRACKER, WORKER, cpu_by_role
from bench.wrk import WrkResult


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds during one load step, and its wall time."""

    wall: float
    server: float
    workers: float
    other: float  # forkserver and resource tracker
    load_generator: float  # wrk (a child of this process, reaped during the step)
    machine: float  # every process on the machine (/proc/stat), this benchmark and strangers included

    @property
    def others(self) -> float:
        """CPU used by processes outside the server's tree and wrk: interference, if large."""
        return max(0.0, self.machine - self.server - self.workers - self.other - self.load_generator)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (everything but idle and iowait)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measured(root: int, load: Callable[[], WrkResult]) -> tuple[WrkResult, CpuUse]:
    """Run ``load`` and account the CPU the server's tree and the load generator used meanwhile."""
    before, children, busy, started = cpu_by_role(root), _children_cpu(), machine_busy_seconds(), time.monotonic()
    result = load()
    after, wall = cpu_by_role(root), time.monotonic() - started
    machine = machine_busy_seconds() - busy
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return result, CpuUse(
        wall=wall,
        server=delta.get(SERVER, 0.0),
        workers=delta.get(WORKER, 0.0),
        other=delta.get(FORKSERVER, 0.0) + delta.get(TRACKER, 0.0),
        load_generator=_children_cpu() - children,
        machine=machine,
    )


def machine_busy_share(seconds: float) -> float:
    """Share of all cores busy over the next ``seconds`` (0 to 1)."""
    before, started = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / (time.monotonic() - started) / (os.cpu_count() or 1)


def wait_until_quiet(max_wait: float, threshold: float = 0.15, window: float = 2.0) -> float:
    """Wait (at most ``max_wait`` s) for a ``window`` with under ``threshold`` of the machine busy.

    Returns the busy share of the last window: the report states it, so a run on a busy machine
    says so.
    """
    deadline = time.monotonic() + max_wait
    busy = machine_busy_share(window)
    while busy > threshold and time.monotonic() < deadline:
        busy = machine_busy_share(window)
    return busy
