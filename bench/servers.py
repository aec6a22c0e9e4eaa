"""Servers for the benchmarks and the tests: started on a free loopback port, waited for, and
stopped with every process they started."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from bench.paths import ROOT
from bench.procs import descendants, is_running, start_time

#: What ``python`` runs: the service, the service with a constant classifier, the floor.
SERVICE = ("-m", "function")
CONSTANT = ("-m", "bench.constant")
FLOOR = ("-m", "bench.floor_server")
HOST = "127.0.0.1"
LOG_TAIL_BYTES = 1_000_000
#: The checkout whose code the servers run: this one, unless ``SERVICE_ROOT`` names another (to
#: watch a test fail on other code, e.g. ``git worktree add /tmp/old HEAD~5``).
SERVICE_ROOT = Path(os.environ.get("SERVICE_ROOT", ROOT))


class ServerError(RuntimeError):
    """A server exited before it was ready, or was not ready in time; the message carries its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m function`` (or ``python *args``) in a child process on a free loopback port.

    Its environment is this one's with ``HOST``, ``PORT``, ``WORKERS=1`` and then ``env``; so
    ``EVENT_LOOP=asyncio python -m bench.run`` reaches every server. It runs in its own session:
    Ctrl-C reaches only the caller, which stops it. Its output goes to ``log_path`` (kept, its end
    only) or to a temporary file; ``stop()`` returns it. As a context manager, it is ready inside
    the block and stopped after it, also on errors and Ctrl-C.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = SERVICE,
        *,
        log_path: Path | None = None,
        cwd: Path = SERVICE_ROOT,
        stderr: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        """``stderr=subprocess.PIPE`` gives the server a pipe nobody reads; ``preexec_fn`` runs in
        the child before the server starts (to join a cgroup, to lower a limit); ``command``
        replaces ``python *args`` with a command that runs it (under strace, as PID 1 of a PID
        namespace with ``unshare --pid --fork``)."""
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        self.log: IO[bytes]
        if log_path is None:
            self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        else:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log = log_path.open("w+b")
        # NOTE: without the variable that a test process sets on importing onnxruntime: the
        # service must turn its telemetry off by itself.
        inherited = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *args] if command is None else list(command),
            cwd=cwd,
            env=inherited | {"HOST": HOST, "PORT": str(self.port), "WORKERS": "1"} | dict(env or {}),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT if stderr is None else stderr,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll /readyz until it answers 200; returns the seconds since the process started.

        A server that exits first, or is not ready in time, is stopped, and ServerError carries
        the end of what it printed.
        """
        deadline = time.monotonic() + timeout
        try:
            while self.proc.poll() is None:
                if self._status("/readyz") == 200:
                    return time.perf_counter() - self.started
                if time.monotonic() > deadline:
                    problem = f"not ready in {timeout:.0f} s"
                    break
                time.sleep(0.02)
            else:
                problem = f"exited with {self.proc.returncode}"
        except BaseException:
            self.stop()
            raise
        output = self.stop().splitlines()[-50:]
        raise ServerError(f"server {problem}:\n" + "\n".join(output))

    def _status(self, path: str) -> int | None:
        """The HTTP status of ``GET path``, or None when nothing answers yet."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            return None
        finally:
            conn.close()

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the server has printed so far."""
        size = os.fstat(self.log.fileno()).st_size
        start = max(0, size - 256 * 1024)
        # NOTE: pread leaves the file offset, which the server's writes share, where it is.
        text = os.pread(self.log.fileno(), size - start, start).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> str:
        """SIGTERM (a graceful drain; SIGKILL after ``timeout``); returns everything the server printed.

        Once the server has exited, any process of its tree still there (stopped ones included) is
        killed: whatever the caller did to them, none outlives this. A caller that checks for
        leftovers does so before. A second call returns "".
        """
        if self.log.closed:
            return ""
        family = [(pid, start_time(pid)) for pid in descendants(self.pid)] if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid, started in family:
            if is_running(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.log_path is not None:
            self.log.close()
            trim_log(self.log_path)
            return self.log_path.read_text(errors="replace")
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        self.log.close()
        return output

    def __enter__(self) -> ServerProcess:
        self.wait_ready()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


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
