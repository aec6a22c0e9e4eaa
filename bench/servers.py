"""Servers under test: started on a free loopback port, waited for, and stopped with all descendants."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.paths import ROOT
from bench.procs import descendants

SERVICE = ("-m", "function")
CONSTANT = ("-m", "bench.constant_server")
FLOOR = ("-m", "bench.floor_server")
HOST = "127.0.0.1"
LOG_TAIL_BYTES = 1_000_000


class ServerError(RuntimeError):
    """A server did not start or exited early; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(port: int, overrides: Mapping[str, str]) -> dict[str, str]:
    """This environment (so EVENT_LOOP=asyncio python -m bench.run compares loops), loopback only."""
    return dict(os.environ) | {"HOST": HOST, "PORT": str(port)} | dict(overrides)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes]
    started: float  # time.perf_counter() just before the process was created

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    module: tuple[str, ...],
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path = ROOT,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    """Start ``python -m module`` from ``cwd`` (whose code it runs) in its own session.

    Its own session: Ctrl-C reaches only the benchmark, which stops it. ``preexec_fn`` runs in
    the child first (to join a cgroup).
    """
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *module],
        cwd=cwd,
        env=server_env(port, env),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    return Server(proc, port, log_path, log_file, started)


def get_status(server: Server, path: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of ``GET path``, or None when nothing answers yet."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(server: Server, timeout: float = 60.0) -> float:
    """Poll /readyz until it answers 200; returns the seconds since the process started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
        if get_status(server, "/readyz") == 200:
            return time.perf_counter() - server.started
        time.sleep(0.02)
    raise ServerError(f"server not ready in {timeout:.0f} s:\n{server.log_tail()}")


def stop(server: Server, timeout: float = 30.0) -> None:
    """SIGTERM (graceful drain), then SIGKILL for the server and whatever it left behind."""
    family = [(pid, _start_time(pid)) for pid in descendants(server.pid)] if server.proc.poll() is None else []
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(5)
    deadline = time.monotonic() + 5
    for pid, born in family:  # forkserver and workers exit on their own when the server is gone
        while _alive(pid, born) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid, born):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    server.log_file.close()
    trim_log(server.log_path)


def trim_log(path: Path, keep: int = LOG_TAIL_BYTES) -> None:
    """Keep the end of a server log (the access log of a load run grows by 100 MB and more)."""
    try:
        size = path.stat().st_size
        if size <= keep:
            return
        with path.open("rb") as f:
            f.seek(size - keep)
            tail = f.read().split(b"\n", 1)[-1]
        path.write_bytes(f"[... {size - len(tail)} bytes of log trimmed by bench ...]\n".encode() + tail)
    except OSError:
        pass


def _stat_fields(pid: int) -> list[str]:
    """Fields 3... of /proc/<pid>/stat (after the command name), or [] if the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int, born: str) -> bool:
    """Whether ``pid`` is still the process that started at ``born`` (not a reused id) and not a zombie."""
    fields = _stat_fields(pid)
    return len(fields) > 19 and fields[19] == born and fields[0] != "Z"


@contextlib.contextmanager
def running(
    module: tuple[str, ...],
    env: Mapping[str, str],
    log_path: Path,
    timeout: float = 60.0,
    cwd: Path = ROOT,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """A ready server for the ``with`` block, stopped afterwards (also on errors and Ctrl-C)."""
    server = start(module, env, log_path, cwd, preexec_fn)
    try:
        wait_ready(server, timeout)
        yield server
    finally:
        stop(server)
