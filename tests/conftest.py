"""Shared fixtures: the real app (real model, real worker pool) and a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from function import worker
from function.app import create_app
from function.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def session():  # type: ignore[no-untyped-def]
    """An onnxruntime session of the committed model, as a worker loads it."""
    return worker.load_session(str(ROOT / "model" / "model.onnx"))


@pytest.fixture
def settings() -> Settings:
    """Defaults with one worker (fast to start); tests replace fields they care about."""
    return Settings(workers=1, log_format="text")


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    """A fresh app through the real factory, started (pool warm) behind a test server."""
    return await aiohttp_client(create_app(settings))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m function`` in a child process, on a free loopback port."""

    def __init__(self, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = os.environ | {"PORT": str(self.port), "HOST": "127.0.0.1", "WORKERS": "1"} | (env or {})
        # NOTE: output goes to a file, not a pipe: nobody reads a pipe during the test, and a
        # full one would block the server's logging.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "function"],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
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
        """SIGTERM (SIGKILL after 30 s); returns everything the server printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        self.log.close()
        return output


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A real server process, ready, stopped after the test."""
    srv = ServerProcess()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session
