"""What tests share besides fixtures: the project root and a real server process on loopback."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The checkout whose ``python -m function`` the tests start: this one, unless ``SERVICE_ROOT``
#: names another (to watch a test fail on other code, e.g. ``git worktree add /tmp/old HEAD~5``).
SERVICE_ROOT = Path(os.environ.get("SERVICE_ROOT", ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m function`` in a child process, on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        *,
        stderr: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """``stderr=subprocess.PIPE`` gives the server a pipe nobody reads (by default output goes to a
        file the test reads at the end); ``preexec_fn`` runs in the child before the server starts."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # NOTE: without the variable that this test process set on importing onnxruntime: the
        # service must turn its telemetry off by itself.
        inherited = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
        full_env = inherited | {"PORT": str(self.port), "HOST": "127.0.0.1", "WORKERS": "1"} | (env or {})
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "function"],
            cwd=SERVICE_ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT if stderr is None else stderr,
            preexec_fn=preexec_fn,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.stop()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("server not ready in time")

    def stop(self) -> str:
        """SIGTERM (SIGKILL after 30 s); returns everything the server printed.

        Whatever the test did to them, no process of the server's outlives this (stopped ones
        included): a test that checks for leftovers does so before.
        """
        if self.log.closed:  # stopped already
            return ""
        family = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        self.log.close()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return output


def split_texts(split: str = "test") -> list[str]:
    """The texts of ``data/<split>.jsonl.gz``, in order."""
    with gzip.open(ROOT / "data" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            # NOTE: the command name (field 2) is in parentheses and may hold spaces.
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children...), from /proc."""
    parents = parent_pids()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return sorted(found)


def prose(count: int, chars: int) -> list[str]:
    """``count`` texts of ``chars`` characters each, cut from the test split's texts laid end to end."""
    text = " ".join(split_texts())
    return [text[i * chars : (i + 1) * chars] for i in range(count)]


def text_body(size: int) -> bytes:
    """A ``{"text": ...}`` body of test-split prose, ``size`` bytes long at most (JSON escapes included)."""
    text = " ".join(split_texts())[:size]
    body = json.dumps({"text": text}).encode()
    while len(body) > size:
        text = text[: len(text) - (len(body) - size)]
        body = json.dumps({"text": text}).encode()
    return body
