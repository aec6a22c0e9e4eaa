"""The service as PID 1 without an init (a pod's `command:` override, a Procfile), here as the
init of a PID namespace of its own (`unshare --pid --fork --mount-proc`, as root). Signals come
from outside the namespace, as a container runtime sends them; the kernel drops any that PID 1 has
no handler for. tests/container/test_pid1.py checks the same in the image."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

import pytest

from bench.procs import children, cmdline, process_state, status, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import START_TIMEOUT, is_ready, predict, start_server, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="a PID namespace needs root and util-linux's unshare",
    ),
]

AS_PID1 = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL", sys.executable, "-m", "function")
ENV = {"WORKERS": "2", "LOG_FORMAT": "text", "SHUTDOWN_GRACE_SECONDS": "5"}


def init_of(server: ServerProcess) -> int:
    """The server's pid (on this side): unshare's child, PID 1 in its namespace."""
    wait_for(lambda: children(server.pid) != [], within=5, interval=0.001)
    (init,) = children(server.pid)
    return init


def replaced(init: int, old: set[int]) -> bool:
    """The pool has its two workers again, none of them one of ``old``."""
    workers = set(worker_pids(init))
    return len(workers) == 2 and not workers & old


def zombies(init: int) -> list[int]:
    return [pid for pid in children(init) if process_state(pid) == "Z"]


def handles(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (its SigCgt mask)."""
    return bool(int(status(pid).get("SigCgt", "0"), 16) >> (signum - 1) & 1)


def loaded(pid: int, name: str) -> bool:
    """Whether a shared object whose path holds ``name`` is mapped into ``pid``."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return name in maps.read()
    except OSError:
        return False


def test_as_pid1_the_stop_signals_are_caught_before_the_service_imports_anything() -> None:
    """When asyncio's extension module (the service's first import after the handlers) is mapped,
    SIGTERM is caught already; sent then, in the middle of the imports, it ends the start with 0."""
    server = ServerProcess(env=ENV, command=AS_PID1)
    code = None
    try:
        init = init_of(server)
        wait_for(lambda: loaded(init, "/_asyncio."), within=10, interval=0.0005)
        caught = handles(init, signal.SIGTERM)
        sent = time.perf_counter() - server.started
        if caught:  # else the kernel would drop it
            os.kill(init, signal.SIGTERM)
            code = server.proc.wait(timeout=10)
    finally:
        output = server.stop()
    print(f"_asyncio mapped {sent:.3f} s after exec, SIGTERM {'caught' if caught else 'not caught'} then: exit {code}")
    assert caught, "no handler for SIGTERM when the service's imports began"
    assert code == 0, output[-2000:]


def test_as_pid1_a_sigterm_soon_after_start_ends_it_with_0() -> None:
    server = ServerProcess(env=ENV, command=AS_PID1)
    try:
        init = init_of(server)
        time.sleep(max(0.0, 0.15 - (time.perf_counter() - server.started)))
        sent = time.perf_counter() - server.started
        os.kill(init, signal.SIGTERM)
        began = time.monotonic()
        code = server.proc.wait(timeout=10)
        took = time.monotonic() - began
    finally:
        output = server.stop()
    print(f"SIGTERM to PID 1 {sent:.3f} s after exec: exit {code} after {took:.2f} s")
    assert code == 0, output[-2000:]
    assert took < 2, "the SIGTERM was not acted on at once"


def test_as_pid1_forkserver_deaths_leave_no_zombie_and_a_sigterm_ends_it_with_0() -> None:
    server = start_server(ENV, command=AS_PID1)
    try:
        init = init_of(server)
        assert status(init)["NSpid"].split()[-1] == "1", "not PID 1 in its namespace"
        left = []
        for _ in range(3):
            (forkserver,) = [pid for pid in children(init) if "multiprocessing.forkserver" in cmdline(pid)]
            old = set(worker_pids(init))
            os.kill(forkserver, signal.SIGKILL)
            wait_for(lambda old=old: replaced(init, old) and is_ready(server.url), within=START_TIMEOUT)
            time.sleep(0.2)  # the last orphans' SIGCHLD handled
            left.append(zombies(init))
        answer = predict(server.url, "The goalie stopped the puck in overtime")
        os.kill(init, signal.SIGTERM)
        code = server.proc.wait(timeout=15)
    finally:
        output = server.stop()
    print(f"zombies under PID 1 after each forkserver death: {left}; prediction {answer.status}; exit {code}")
    assert left == [[], [], []], output[-2000:]
    assert answer.status == 200
    assert code == 0, output[-2000:]
    assert "reaped 6 orphaned processes as PID 1" in output
    assert "Traceback" not in output, output[-3000:]
