"""A process and all its descendants, and their memory, from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # NOTE: the command name (field 2) may contain spaces and parentheses; fields follow the last ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (children, grandchildren...), breadth first."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    frontier = [root]
    while frontier:
        kids = [kid for pid in frontier for kid in sorted(children.get(pid, []))]
        found.extend(kids)
        frontier = kids
    return found


def tree(root: int) -> list[int]:
    return [root, *descendants(root)]


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    parent: int
    command: str
    rss_kib: int
    pss_kib: int | None  # None when smaps_rollup is not readable


def _field_kib(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return None


def _command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def memory(pid: int) -> ProcessMemory | None:
    """VmRSS and Pss of ``pid``; None if it is gone."""
    try:
        rss = _field_kib((PROC / str(pid) / "status").read_text(), "VmRSS")
    except OSError:
        return None
    if rss is None:  # a zombie has no memory lines
        return None
    try:
        pss = _field_kib((PROC / str(pid) / "smaps_rollup").read_text(), "Pss")
    except OSError:
        pss = None
    return ProcessMemory(pid, _parent_of(pid) or 0, _command(pid), rss, pss)


def tree_memory(root: int) -> list[ProcessMemory]:
    return [m for m in (memory(pid) for pid in tree(root)) if m is not None]


SERVER, WORKER, FORKSERVER, TRACKER = "server (event loop)", "inference worker", "forkserver", "resource tracker"


def role_of(pid: int, parent: int, command: str, root: int) -> str:
    """What a process of the service's tree is, from its command line and parent."""
    if pid == root:
        return SERVER
    if "resource_tracker" in command:
        return TRACKER
    if "forkserver" in command:
        # NOTE: workers are forked by the forkserver and keep its command line.
        return FORKSERVER if parent == root else WORKER
    return command[:60]


def role(process: ProcessMemory, root: int) -> str:
    return role_of(process.pid, process.parent, process.command, root)


def mb(kib: int) -> float:
    """Kibibytes (as /proc reports them) in megabytes of 10**6 bytes."""
    return kib * 1024 / 1e6


def total_rss_mb(processes: list[ProcessMemory]) -> float:
    return mb(sum(p.rss_kib for p in processes))


def total_pss_mb(processes: list[ProcessMemory]) -> float | None:
    if any(p.pss_kib is None for p in processes):
        return None
    return mb(sum(p.pss_kib or 0 for p in processes))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 if it is gone)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds so far of the server and its descendants, summed by role."""
    totals: dict[str, float] = {}
    for pid in tree(root):
        name = role_of(pid, _parent_of(pid) or 0, _command(pid), root)
        totals[name] = totals.get(name, 0.0) + cpu_seconds(pid)
    return totals


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU time so far of each thread of ``pid``, by thread id ({} if it is gone)."""
    try:
        tids = [int(entry.name) for entry in (PROC / str(pid) / "task").iterdir() if entry.name.isdigit()]
    except OSError:
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for tid in tids:
        try:
            fields = (PROC / str(pid) / "task" / str(tid) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        times[tid] = (int(fields[11]) + int(fields[12])) / ticks
    return times
