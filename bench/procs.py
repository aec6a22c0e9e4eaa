"""A process and its descendants, from /proc (Linux): the tree, each one's state, memory and CPU.

The service's tree is server -> forkserver (-> workers) and resource tracker. The benchmarks, the
tests and the container test read it only through this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first), or [] when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return []
    # NOTE: the command name (field 2) may hold spaces and parentheses; the fields follow the last ")".
    return stat.rpartition(")")[2].split()


def process_state(pid: int) -> str:
    """R (running), S (sleeping), T (stopped), Z (zombie)...; "" when there is no such process."""
    fields = stat_fields(pid)
    return fields[0] if fields else ""


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as gone)."""
    return process_state(pid) in ("", "Z")


def pid_alive(pid: int) -> bool:
    """The pid is taken: the process runs, or it is a zombie nobody has reaped yet."""
    return process_state(pid) != ""


def start_time(pid: int) -> str:
    """When the process started (clock ticks after boot); "" when it is gone. A pid and its start
    time name one process, even once the pid is reused."""
    fields = stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def is_running(pid: int, started: str) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` and has not exited."""
    return start_time(pid) == started and not gone(pid)


def parent_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:  # gone meanwhile
                parents[int(entry.name)] = parent
    return parents


def children(pid: int) -> list[int]:
    return sorted(child for child, parent in parent_pids().items() if parent == pid)


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (children, grandchildren...), breadth first."""
    kids_of: dict[int, list[int]] = {}
    for child, parent in sorted(parent_pids().items()):
        kids_of.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = [root]
    while frontier:
        frontier = [kid for pid in frontier for kid in kids_of.get(pid, [])]
        found.extend(frontier)
    return found


def tree(root: int) -> list[int]:
    return [root, *descendants(root)]


def cmdline(pid: int) -> str:
    """The command line, its arguments joined by spaces; "" when it is gone."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status by field name (``Uid``, ``CapEff``, ``VmRSS``...); {} when it is gone."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return {}
    return {name: value.strip() for name, _, value in (line.partition(":") for line in text.splitlines())}


def worker_pids(server_pid: int) -> list[int]:
    """The inference workers: children of the server's forkserver (server -> forkserver -> workers)."""
    forkservers = [c for c in children(server_pid) if "multiprocessing.forkserver" in cmdline(c)]
    return sorted(w for f in forkservers for w in children(f))


# ---- memory -------------------------------------------------------------------------------------


def _kib(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return None


def rss_kib(pid: int) -> int | None:
    """VmRSS of one process; None when it is gone (a zombie has no memory lines)."""
    try:
        return _kib((PROC / str(pid) / "status").read_text(), "VmRSS")
    except OSError:
        return None


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 if it is gone."""
    return (rss_kib(pid) or 0) * 1024


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants (the server, its forkserver and workers)."""
    return sum(rss_bytes(p) for p in tree(pid))


def tree_pss_bytes(pid: int) -> int:
    """PSS of a process and all its descendants: each page counted once, its share split among the
    processes mapping it (the model's pages, shared by the forkserver and the workers, count once)."""
    return sum((m.pss_kib or 0) * 1024 for m in tree_memory(pid))


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    parent: int
    command: str
    rss_kib: int
    pss_kib: int | None  # None when smaps_rollup is not readable


def memory(pid: int) -> ProcessMemory | None:
    """VmRSS and Pss of ``pid``; None if it is gone."""
    rss = rss_kib(pid)
    if rss is None:
        return None
    try:
        pss = _kib((PROC / str(pid) / "smaps_rollup").read_text(), "Pss")
    except OSError:
        pss = None
    return ProcessMemory(pid, parent_of(pid) or 0, cmdline(pid), rss, pss)


def tree_memory(root: int) -> list[ProcessMemory]:
    return [m for m in (memory(pid) for pid in tree(root)) if m is not None]


def mb(kib: int) -> float:
    """Kibibytes (as /proc reports them) in megabytes of 10**6 bytes."""
    return kib * 1024 / 1e6


def total_rss_mb(processes: list[ProcessMemory]) -> float:
    return mb(sum(p.rss_kib for p in processes))


def total_pss_mb(processes: list[ProcessMemory]) -> float | None:
    if any(p.pss_kib is None for p in processes):
        return None
    return mb(sum(p.pss_kib or 0 for p in processes))


# ---- roles and CPU ------------------------------------------------------------------------------

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 if it is gone)."""
    fields = stat_fields(pid)
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds so far of the server and its descendants, summed by role."""
    totals: dict[str, float] = {}
    for pid in tree(root):
        name = role_of(pid, parent_of(pid) or 0, cmdline(pid), root)
        totals[name] = totals.get(name, 0.0) + cpu_seconds(pid)
    return totals
