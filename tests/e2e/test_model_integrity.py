"""The model served is the one checked at start: workers load those bytes, never the path again;
and a worker that cannot be started again turns readiness and liveness to failure, once, clearly."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.procs import gone, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import http, is_ready, predict, wait_for
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

TEXT = "NASA launched the shuttle into orbit"


def replace_a_worker(server: ServerProcess) -> int:
    """SIGKILL the worker (its pid), and leave it to the service to start another."""
    [victim] = worker_pids(server.proc.pid)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: gone(victim), 5)
    return victim


@pytest.mark.parametrize("change", ["replaced", "removed"])
def test_a_model_file_changed_after_start_changes_nothing_served(
    servers: Callable[..., ServerProcess], tmp_path: Path, change: str
) -> None:
    shutil.copytree(ROOT / "model", tmp_path / "model")
    server = servers({"MODEL_DIR": str(tmp_path / "model")})
    before = http("GET", server.url + "/model").json()
    model = tmp_path / "model" / "model.onnx"
    if change == "replaced":
        model.write_bytes(b"not an onnx model at all")
    else:
        model.unlink()
    victim = replace_a_worker(server)
    wait_for(lambda: worker_pids(server.proc.pid) not in ([], [victim]), 10)
    wait_for(lambda: is_ready(server.url), 10)
    answer = predict(server.url, TEXT)
    assert answer.status == 200
    assert answer.json() == {"label": "space"}
    assert http("GET", server.url + "/model").json()["sha256"] == before["sha256"]
    output = server.stop()
    assert "Traceback" not in output


def test_a_worker_that_cannot_be_started_again_fails_readiness_and_liveness_with_one_line(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = servers({"TMPDIR": str(scratch), "LOG_FORMAT": "text"})
    for socket in scratch.glob("pymp-*/*"):  # the forkserver's socket, as a wiped /var/tmp would leave it
        socket.unlink()
    replace_a_worker(server)
    wait_for(lambda: http("GET", server.url + "/healthz").status == 503, 10)
    readiness, answer = http("GET", server.url + "/readyz"), predict(server.url, TEXT)
    output = server.stop()
    failures = [line for line in output.splitlines() if "failed to start" in line]
    print("\n".join(failures))
    assert readiness.status == 503
    assert answer.status == 503
    assert answer.json()["error"] == "model_unavailable"
    assert len([line for line in failures if "readiness and liveness now fail" in line]) == 1
    assert "Traceback" not in output
