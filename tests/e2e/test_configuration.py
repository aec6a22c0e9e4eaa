"""A mistyped setting: exit 2 at once with one line naming the variable and its value, before any
worker starts; never a traceback, never a "serving" line for a port that was not bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.servers import SERVICE_ROOT, free_port

pytestmark = pytest.mark.e2e

BAD = [
    ("BODY_TIMEOUT_SECONDS", "nan"),
    ("BODY_TIMEOUT_SECONDS", "inf"),
    ("BODY_TIMEOUT_SECONDS", "-1"),
    ("SHUTDOWN_GRACE_SECONDS", "-5"),
    ("INFERENCE_TIMEOUT_SECONDS", "0"),
    ("PORT", "65617"),
    ("PORT", "0"),
    ("PORT", "http"),
    ("WORKERS", "-1"),
    ("WORKERS", "two"),
    ("MAX_BODY_BYTES", "0"),
    ("MAX_PENDING", "1e3"),
    ("LOG_LEVEL", "LOUD"),
    ("LOG_FORMAT", "xml"),
    ("EVENT_LOOP", "trio"),
    ("ACCESS_LOG", "maybe"),
    ("HOST", "no-such-host.invalid"),
    ("HOST", "203.0.113.9"),  # a documentation address, not one of this machine's
]


def run_with(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "function"],
        cwd=SERVICE_ROOT,
        env=os.environ | {"PORT": str(free_port()), "TMPDIR": str(tmp_path)} | env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(("variable", "value"), BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_a_bad_setting_exits_2_with_one_line_before_any_worker_starts(
    variable: str, value: str, tmp_path: Path
) -> None:
    result, took = run_with({variable: value}, tmp_path)
    lines = result.stderr.splitlines()
    print(f"{variable}={value}: exit {result.returncode} after {took:.2f} s: {lines}")
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, lines
    assert variable in lines[0]
    assert value in lines[0]
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stderr + result.stdout
    assert not list(tmp_path.iterdir()), "a forkserver was started (its socket folder is there)"


def test_a_port_in_use_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, _ = run_with({"PORT": str(port)}, tmp_path)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == [f"python -m function: PORT={port} is already in use on HOST='0.0.0.0'"]
    assert not list(tmp_path.iterdir())


def test_an_unknown_flag_is_one_line_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "function", "--wrokers", "2"], cwd=SERVICE_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "--wrokers" in result.stderr
