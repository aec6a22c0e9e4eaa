"""No process outlives the server: killed with SIGKILL, its forkserver, resource tracker and workers
are gone within 5 s; a killed forkserver takes its workers with it, and they are replaced."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from bench.procs import cmdline, descendants, gone, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import http, is_ready, wait_for

pytestmark = pytest.mark.e2e


def test_after_a_sigkill_of_the_server_no_process_of_it_is_left(servers: Callable[..., ServerProcess]) -> None:
    server = servers({"WORKERS": "2"})
    family = descendants(server.proc.pid)
    names = sorted(cmdline(pid).split(" main(")[0].rsplit(" ", 1)[-1] for pid in family)
    assert len(family) >= 4, names  # forkserver, resource tracker, two workers
    server.proc.kill()
    server.proc.wait()
    took = wait_for(lambda: all(gone(pid) for pid in family), within=5)
    print(f"server SIGKILLed: its {len(family)} processes gone after {took:.2f} s")


def test_a_killed_forkserver_takes_its_workers_and_they_are_replaced(servers: Callable[..., ServerProcess]) -> None:
    server = servers({"WORKERS": "2"})
    workers = worker_pids(server.proc.pid)
    [forkserver] = [pid for pid in descendants(server.proc.pid) if "forkserver" in cmdline(pid) and pid not in workers]
    os.kill(forkserver, signal.SIGKILL)
    took = wait_for(lambda: all(gone(pid) for pid in workers), within=5)
    wait_for(lambda: len(worker_pids(server.proc.pid)) == 2 and is_ready(server.url), 10)
    replacements = worker_pids(server.proc.pid)
    print(f"forkserver SIGKILLed: its workers gone after {took:.2f} s, replaced by {replacements}")
    assert not set(replacements) & set(workers)
    assert (
        http("POST", server.url + "/prediction", b'{"text": "a pgp key"}', {"Content-Type": "application/json"}).status
        == 200
    )
    family = descendants(server.proc.pid)
    server.proc.kill()
    wait_for(lambda: all(gone(pid) for pid in family + workers), within=5)
