"""Reaping orphans when the service is PID 1 (a container started without an init).

Every process orphaned in the container becomes PID 1's child, and stays a zombie until PID 1
waits for it. Ours are workers whose forkserver died: each dies with it (``PR_SET_PDEATHSIG``),
and the pool replaces them, so without a reaper each forkserver death leaves a zombie per worker.

Two of PID 1's children must never be reaped here: the forkserver and multiprocessing's resource
tracker. multiprocessing collects their exit status itself (``ForkServer.ensure_running`` calls
``waitpid`` on the old forkserver and fails with ChildProcessError if someone else reaped it, and
then no worker can start again). So no ``waitpid(-1)`` and no ``SIGCHLD`` ignored (the kernel
would then reap everything): each zombie child is found in ``/proc`` and reaped by pid.
Workers are the forkserver's children, whose status comes through its pipe and never through
``waitpid``: once one is ours, nobody else will reap it. The server starts no other child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger("function.serve")
#: A forkserver (re)start holds its lock while its new pid is not yet recorded: reap again after this.
RETRY_SECONDS = 0.05


def waited_for() -> set[int]:
    """The children multiprocessing will ``waitpid`` itself: the forkserver and the resource tracker
    (read each time: both change when relaunched)."""
    # NOTE: private attributes of CPython 3.11's multiprocessing, read through vars() (typeshed
    # omits them); tests/test_reaper.py fails if they move.
    pids = (
        vars(multiprocessing.forkserver._forkserver).get("_forkserver_pid"),
        vars(multiprocessing.resource_tracker._resource_tracker).get("_pid"),
    )
    return {pid for pid in pids if isinstance(pid, int) and pid > 0}


def zombie_children() -> list[int]:
    """This process's children that have exited and wait to be reaped (state Z in /proc/<pid>/stat)."""
    me, found = os.getpid(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                raw = file.read()
        except OSError:
            continue  # gone meanwhile
        # NOTE: after the last ")": the command name may itself hold spaces and parentheses.
        state, ppid = raw[raw.rindex(b")") + 2 :].split(b" ", 2)[:2]
        if state == b"Z" and int(ppid) == me:
            found.append(int(name))
    return found


def reap_orphans() -> int | None:
    """Reap every zombie child but those multiprocessing waits for; how many were reaped, or None
    while a forkserver (re)starts (its new pid is not known yet): try again shortly."""
    lock: threading.Lock = vars(multiprocessing.forkserver._forkserver)["_lock"]
    if not lock.acquire(blocking=False):
        return None
    try:
        keep, reaped = waited_for(), 0
        for pid in zombie_children():
            if pid in keep:
                continue
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                reaped += done == pid
        return reaped
    finally:
        lock.release()


class OrphanReaper:
    """Reaps orphans at each SIGCHLD: on the event loop while one runs, at once otherwise.

    A plain handler (``signal.signal``): uvloop refuses ``add_signal_handler(SIGCHLD)``, which it
    keeps for its own subprocesses. While a loop runs, the handler only schedules the reap: it
    runs between any two bytecodes of the main thread, and the loop's callbacks do not.
    """

    def __init__(self) -> None:
        self.reaped = 0
        self._scheduled = False

    def install(self) -> OrphanReaper:
        """Reap from now on (and the orphans already there)."""
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        self.reap()
        return self

    def uninstall(self) -> None:
        """Reap no more, once more excepted (the orphans of the shutdown)."""
        # NOTE: SIG_DFL, never SIG_IGN: an ignored SIGCHLD makes the kernel reap every child,
        # the forkserver and the resource tracker included.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.reap()

    def reap(self) -> bool:
        """Reap now; False while a forkserver (re)starts (nothing was reaped)."""
        done = reap_orphans()
        if done is None:
            return False
        self.reaped += done
        return True

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # before the event loop runs, or after: reap here
            self.reap()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon_threadsafe(self._reap_on_loop, loop)

    def _reap_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if not self.reap():
            loop.call_later(RETRY_SECONDS, self._reap_on_loop, loop)


@contextlib.contextmanager
def orphans_reaped_as_init() -> Iterator[None]:
    """As PID 1, reap orphans until the block ends, and once more then; as any other pid, nothing
    (the container's init, tini in the image, reaps them)."""
    if os.getpid() != 1:
        yield
        return
    reaper = OrphanReaper().install()
    try:
        yield
    finally:
        reaper.uninstall()
        log.info("reaped %d orphaned processes as PID 1", reaper.reaped)
