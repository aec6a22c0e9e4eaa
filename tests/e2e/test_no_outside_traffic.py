"""No surprise traffic and no stray files: the service, its forkserver and its workers (onnxruntime
with its telemetry off) ask no resolver, connect nowhere but to each other, and write nothing but
the forkserver's socket folder under TMPDIR and multiprocessing's semaphores in /dev/shm."""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.servers import ServerProcess
from tests.e2e.helpers import http

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt-get install strace; .ci/run does)"),
]

#: onnxruntime's telemetry, when on, looks its host up about 8 s after start: watch for longer.
WATCH_SECONDS = 12.0
_CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_\w+), (.*?)\}")
_CREATED = re.compile(r'(?:openat\(AT_FDCWD, "([^"]+)", [^)]*O_CREAT|mkdir\("([^"]+)")')


def test_no_dns_query_no_connection_out_and_no_file_outside_tmpdir(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    home, scratch, trace = tmp_path / "home", tmp_path / "tmp", tmp_path / "trace"
    home.mkdir()
    scratch.mkdir()
    command = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,openat,mkdir", "-o", str(trace)]
    server = servers(
        {"HOME": str(home), "TMPDIR": str(scratch), "WORKERS": "2"},
        command=[*command, sys.executable, "-m", "function"],
    )
    started = time.monotonic()
    while time.monotonic() - started < WATCH_SECONDS:
        assert http("POST", server.url + "/prediction", b'{"text": "a pgp key"}', {"Content-Type": "application/json"})
        time.sleep(0.2)
    server.stop()
    lines = trace.read_text().splitlines()
    connects = [m.groups() for m in map(_CONNECT.search, lines) if m]
    outside = [c for c in connects if c[0] != "AF_UNIX" or str(scratch) not in c[1]]
    created = [next(p for p in m.groups() if p) for m in map(_CREATED.search, lines) if m and "= -1" not in m.string]
    stray = [p for p in created if not p.startswith((str(scratch) + "/", "/dev/shm/"))]
    print(f"{len(lines)} traced calls: {len(connects)} connects, {len(created)} files or folders created")
    assert connects, "strace saw no connect at all: the trace is not working"
    assert not outside, outside
    assert not any("sendto" in line and "htons(53)" in line for line in lines)
    assert not stray, stray
    assert not list(home.iterdir()), "something wrote under $HOME"
