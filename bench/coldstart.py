"""Cold start: seconds from creating the server process to its first 200 answer to POST /prediction."""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from pathlib import Path

from bench.servers import HOST, ServerError, ServerProcess

BODY = b'{"text": "The goalie stopped the puck in overtime."}'
POLL_SECONDS = 0.005


def _post_status(server: ServerProcess) -> int | None:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=2)
    try:
        conn.request("POST", "/prediction", BODY, {"Content-Type": "application/json"})
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def first_answer_seconds(env: Mapping[str, str], log_path: Path, timeout: float = 60.0) -> float:
    """One fresh start: poll POST /prediction every few milliseconds until it answers 200."""
    server = ServerProcess(env, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _post_status(server) == 200:
                return time.perf_counter() - server.started
            if server.proc.poll() is not None:
                raise ServerError(f"server exited with {server.proc.returncode}:\n{server.log_tail()}")
            time.sleep(POLL_SECONDS)
        raise ServerError(f"no 200 answer in {timeout:.0f} s:\n{server.log_tail()}")
    finally:
        server.stop()


def cold_starts(env: Mapping[str, str], log_dir: Path, runs: int) -> list[float]:
    return [first_answer_seconds(env, log_dir / f"coldstart-{i}.log") for i in range(runs)]
