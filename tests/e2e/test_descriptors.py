"""Open files: the soft limit is raised to the hard one at start; at the limit, new connections are
refused with a logged reason, and a worker can still be replaced."""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.procs import gone, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import is_ready, predict, sample, scrape, wait_for

pytestmark = pytest.mark.e2e


def limit_open_files(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def soft_limit(pid: int) -> int:
    line = next(li for li in Path(f"/proc/{pid}/limits").read_text().splitlines() if li.startswith("Max open files"))
    return int(line.split()[3])


def test_the_soft_limit_is_raised_to_the_hard_limit(servers: Callable[..., ServerProcess]) -> None:
    server = servers({}, preexec_fn=limit_open_files(256, 1024))
    assert soft_limit(server.proc.pid) == 1024


def test_at_the_limit_connections_are_refused_with_a_reason_and_a_worker_is_still_replaced(
    servers: Callable[..., ServerProcess],
) -> None:
    server = servers({"WORKERS": "2", "LOG_FORMAT": "text"}, preexec_fn=limit_open_files(256, 256))
    held: list[socket.socket] = []
    try:
        for _ in range(300):  # more than the limit: the last ones are accepted and closed at once
            connection = socket.create_connection(("127.0.0.1", server.port))
            connection.setblocking(False)
            held.append(connection)
        time.sleep(0.3)
        refused = sum(1 for c in held if closed(c))
        victim = worker_pids(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: gone(victim), 5)
        time.sleep(1.5)  # the replacement starts while every connection the limit allows is open
    finally:
        for connection in held:
            connection.close()
    wait_for(lambda: is_ready(server.url), 10)
    samples = scrape(server.url)
    answer = predict(server.url, "NASA launched the shuttle into orbit")
    output = server.stop()
    print(f"300 connections under a limit of 256 descriptors: {refused} refused")
    assert refused > 0
    assert sample(samples, "textclf_connections_refused_total") >= refused
    assert "refusing new connections" in output
    assert answer.status == 200
    assert sample(samples, "textclf_pool_worker_restarts_total") == 1


def closed(connection: socket.socket) -> bool:
    """The server has closed this connection (it reads EOF or a reset), as far as is known now."""
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False
