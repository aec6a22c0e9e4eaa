"""Trouble: a worker dies, the service is told to stop, the model folder is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from bench.servers import ServerProcess, free_port
from function.batching.adaptive import AdaptiveBatcher
from function.parallel.dispatcher import Dispatcher
from function.parallel.process import WorkerProcess
from function.settings import Settings
from function.state import CLASSIFIER, METRICS
from tests.helpers import ROOT

JSON = {"Content-Type": "application/json"}
#: Enough work to keep both workers busy for a few hundred milliseconds (7.7 MB, over the default limit).
SLOW_BATCH = json.dumps({"texts": ["the goalie stopped the puck in overtime " * 750] * 256}).encode()
BIG_BODIES = 8 * 1024 * 1024


def slow_batch() -> io.BytesIO:
    return io.BytesIO(SLOW_BATCH)


async def wait_until(predicate, within: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > within:
            raise TimeoutError
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def busy_with_a_batch(classifier: AdaptiveBatcher, within: float = 5.0) -> WorkerProcess:
    """A worker busy with texts (seen busy twice, 2 ms apart: a probe takes well under 1 ms)."""
    dispatcher = classifier.executor
    assert isinstance(dispatcher, Dispatcher)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        busy = set(dispatcher.busy) if classifier.pending else set()
        await asyncio.sleep(0.002)
        still = [w for w in dispatcher.busy if w in busy]
        if still:
            return still[0]
    raise TimeoutError(f"no worker busy with a batch within {within} s: {dispatcher.pool.workers}")


def workers_of(classifier: AdaptiveBatcher) -> list[WorkerProcess]:
    assert isinstance(classifier.executor, Dispatcher)
    return classifier.executor.pool.workers


async def is_ready(client: TestClient) -> bool:
    return (await client.get("/readyz")).status == 200


@pytest.mark.parametrize("settings", [Settings(workers=2, log_format="text", max_body_bytes=BIG_BODIES)])
async def test_a_killed_worker_fails_only_its_requests_and_is_replaced(client: TestClient) -> None:
    classifier = client.app[CLASSIFIER]
    assert isinstance(classifier, AdaptiveBatcher)
    held = asyncio.create_task(client.post("/predictions", data=slow_batch(), headers=JSON))
    victim = await busy_with_a_batch(classifier)
    os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]

    response = await held
    assert response.status == 503
    assert (await response.json())["error"] == "model_unavailable"
    other = await client.post("/prediction", data=b'{"text": "orbit"}', headers=JSON)
    assert other.status == 200  # the other worker kept serving
    recovered_in = await wait_until(lambda: is_ready(client), 2.0)
    assert recovered_in < 2.0
    assert victim.pid is not None
    assert victim.alive
    assert client.app[METRICS].registry.get_sample_value("textclf_pool_worker_restarts_total") == 1
    answers = await asyncio.gather(
        *(client.post("/prediction", data=b'{"text": "a pgp key"}', headers=JSON) for _ in range(20))
    )
    assert {a.status for a in answers} == {200}


async def test_an_idle_worker_that_dies_is_noticed_and_replaced(client: TestClient) -> None:
    classifier = client.app[CLASSIFIER]
    assert isinstance(classifier, AdaptiveBatcher)
    [only] = workers_of(classifier)
    old_pid = only.pid
    os.kill(old_pid, signal.SIGKILL)  # type: ignore[arg-type]
    await wait_until(lambda: asyncio.sleep(0, only.pid != old_pid and classifier.ready), 3.0)
    response = await client.post("/prediction", data=b'{"text": "orbit"}', headers=JSON)
    assert response.status == 200


SHORT_BATCH = json.dumps({"texts": ["the goalie stopped the puck"] * 32}).encode()  # one full batch


async def pending_reaches(classifier: AdaptiveBatcher, texts: int) -> None:
    await wait_until(lambda: asyncio.sleep(0, classifier.pending == texts), 5.0)


@pytest.mark.parametrize(
    ("settings", "fault"),
    [
        (Settings(workers=1, log_format="text"), "killed"),
        (Settings(workers=1, log_format="text", inference_timeout_seconds=0.5), "hung"),
    ],
)
async def test_batches_queued_behind_a_call_whose_worker_dies_or_hangs_run_on_the_replacement(
    client: TestClient, fault: str
) -> None:
    classifier = client.app[CLASSIFIER]
    assert isinstance(classifier, AdaptiveBatcher)
    [worker] = workers_of(classifier)
    os.kill(worker.pid, signal.SIGSTOP)  # type: ignore[arg-type]
    try:
        running = asyncio.create_task(client.post("/predictions", data=SHORT_BATCH, headers=JSON))
        await pending_reaches(classifier, 32)
        queued = asyncio.create_task(client.post("/predictions", data=SHORT_BATCH, headers=JSON))
        await pending_reaches(classifier, 64)
        waiting = asyncio.create_task(client.post("/predictions", data=SHORT_BATCH, headers=JSON))
        await pending_reaches(classifier, 96)
        if fault == "killed":
            os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        first, second, third = await running, await queued, await waiting
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGCONT)  # type: ignore[arg-type]
    assert first.status == 503, "the texts of the call the worker held fail"
    assert (await first.json())["error"] == "model_unavailable"
    assert second.status == 200, "the call queued behind it never ran, so it ran again"
    assert (await second.json())["labels"] == ["hockey"] * 32
    assert third.status == 200, "the batch still waiting in its lane went to the replacement too"
    assert client.app[METRICS].registry.get_sample_value("textclf_pool_worker_restarts_total") == 1


def test_sigterm_lets_requests_in_flight_finish_then_exits_0() -> None:
    server = ServerProcess(env={"SHUTDOWN_GRACE_SECONDS": "10", "MAX_BODY_BYTES": str(BIG_BODIES)})
    server.wait_ready()

    async def scenario() -> list[int]:
        async with ClientSession() as http:
            in_flight = [
                asyncio.create_task(http.post(server.url + "/predictions", data=slow_batch(), headers=JSON))
                for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            return [(await task).status for task in in_flight]

    started = time.monotonic()
    statuses = asyncio.run(scenario())
    code = server.proc.wait(15)
    output = server.stop()
    assert statuses == [200, 200, 200], output
    assert code == 0, output
    assert time.monotonic() - started < 10
    assert "draining" in output


def test_a_model_that_does_not_match_its_metadata_is_refused(tmp_path: Path) -> None:
    for name in ("model.json", "model.onnx"):
        (tmp_path / name).write_bytes((ROOT / "model" / name).read_bytes())
    (tmp_path / "model.onnx").write_bytes((tmp_path / "model.onnx").read_bytes() + b"tampered")
    result = subprocess.run(
        [sys.executable, "-m", "function", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"MODEL_DIR": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 1
    assert "SHA-256" in result.stderr


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "function"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"MODEL_DIR": str(tmp_path / "nothing")},
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot read model metadata" in result.stderr
