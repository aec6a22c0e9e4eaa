"""What this process may really use: CPUs (affinity mask, cgroup quota) and memory (cgroup limit)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_V2_CPU_MAX = CGROUP_ROOT / "cpu.max"
CGROUP_V1_QUOTA = CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us"
CGROUP_V1_PERIOD = CGROUP_ROOT / "cpu" / "cpu.cfs_period_us"
#: cgroup v1 writes "no limit" as a huge number (the largest page-aligned 64-bit value).
_UNLIMITED = 1 << 60


def cgroup_cpu_limit(
    cpu_max: Path = CGROUP_V2_CPU_MAX, v1_quota: Path = CGROUP_V1_QUOTA, v1_period: Path = CGROUP_V1_PERIOD
) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 CFS files); None when unlimited."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = v1_quota.read_text().strip(), v1_period.read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    try:
        limit = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return limit if limit > 0 else None


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpus_from(affinity: int, quota: float | None) -> int:
    """The smaller of the affinity mask and the rounded-up quota; at least 1."""
    if quota is not None:
        affinity = min(affinity, math.ceil(quota))
    return max(1, affinity)


def available_cpus() -> int:
    """CPUs this process may really use (a 2-CPU pod on a 64-core node gets 2)."""
    return cpus_from(affinity_cpus(), cgroup_cpu_limit())


def memory_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """Bytes of memory this process's cgroup (or an ancestor) allows; None when unlimited or unknown.

    Reads cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes`` in the folder ``/proc/self/cgroup``
    names and every folder above it, and in the mount's root (what a container sees of its own).
    """
    limits = []
    for folder in _memory_folders(root, proc_cgroup):
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                text = (folder / name).read_text().strip()
            except OSError:
                continue
            if text.isdigit() and 0 < int(text) < _UNLIMITED:
                limits.append(int(text))
    return min(limits) if limits else None


def _memory_folders(root: Path, proc_cgroup: Path) -> Iterator[Path]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    bases = [root / "memory", root]
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = root / "memory"
        elif number == "0" and not controllers:
            base = root
        else:
            continue
        folder = base / path.lstrip("/")
        while folder != base and base in folder.parents:
            yield folder
            folder = folder.parent
    yield from bases
