"""Shutdown as a cluster does it: SIGTERM while bodies still arrive (real clients streaming slowly:
requests with a generator body, curl --limit-rate), with a hung worker, signals
repeated or mixed (what process managers send on Ctrl-C), and a SIGTERM before the service is up.
Every request in flight gets an answer, the exit code is 0, nothing is left behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import requests

from bench.http1 import exchange, request
from bench.procs import descendants, gone, worker_pids
from bench.servers import ServerProcess
from tests.e2e.helpers import JSON, Outcome, send, wait_for
from tests.helpers import prose

pytestmark = pytest.mark.e2e

#: 256 texts that keep the two workers busy for a few hundred milliseconds.
SLOW_BATCH = {"texts": [f"the goalie {i} stopped puck {i * 7} in overtime " * 150 for i in range(256)]}
#: 256 texts of 8000 characters of test-set prose (2 MB): six of them are seconds of work.
LONGER_BATCH = {"texts": prose(256, 8000)}


def slow_upload_with_requests(url: str, text: str, seconds: float) -> tuple[int, str]:
    """POST ``{"text": text}`` with requests, its body a generator spread over ``seconds`` (chunked)."""
    body = json.dumps({"text": text}).encode()
    pieces = 20

    def chunks() -> Iterator[bytes]:
        step = -(-len(body) // pieces)
        for i in range(0, len(body), step):
            time.sleep(seconds / pieces)
            yield body[i : i + step]

    answer = requests.post(url + "/prediction", data=chunks(), headers=JSON, timeout=30)
    return answer.status_code, answer.headers.get("Connection", "")


def slow_upload_with_curl(url: str, text: str, rate: int, folder: Path) -> subprocess.Popen[str]:
    """curl POSTing ``{"text": text}`` (from a file in ``folder``) at ``rate`` bytes a second; prints
    the status it got."""
    body = folder / f"body-{len(text)}.json"
    body.write_text(json.dumps({"text": text}))
    return subprocess.Popen(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--limit-rate",
            str(rate),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{body}",
            url + "/prediction",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (apt-get install curl); .ci/run installs it")
async def test_sigterm_answers_every_request_accepted_reading_uploads_in_progress_to_the_end(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    grace = 10.0
    server = servers({"WORKERS": "2", "SHUTDOWN_GRACE_SECONDS": str(grace), "MAX_BODY_BYTES": str(8 * 2**20)})
    text = " ".join(prose(1, 60_000))
    started = time.monotonic()
    requests_upload = asyncio.create_task(asyncio.to_thread(slow_upload_with_requests, server.url, text, 4.0))
    curl_upload = slow_upload_with_curl(server.url, text, 20_000, tmp_path)  # 60 KB at 20 KB/s: 3 s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await send(http, server.url + "/prediction", {"text": "warm the kept-alive connection"})
        complete = [asyncio.create_task(send(http, server.url + "/predictions", SLOW_BATCH)) for _ in range(3)]
        await asyncio.sleep(1.0 - (time.monotonic() - started))  # each upload is 1 s into its body
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.2)
        # A request on a connection kept alive from before the signal: answered, the connection closed.
        late = await send(http, server.url + "/prediction", {"text": "the senate voted on the bill"})
        answered = await asyncio.gather(*complete)
        uploaded = await requests_upload
        curl_status = (await asyncio.to_thread(curl_upload.communicate, timeout=20))[0]
    code = await asyncio.to_thread(server.proc.wait, grace + 5)
    exited_in = time.monotonic() - signalled
    output = server.stop()
    print(
        f"SIGTERM 1 s into 4 s (requests) and 3 s (curl) uploads: requests {uploaded}, curl {curl_status}; "
        f"complete {[o.status for o in answered]}; after the signal, on a kept-alive connection {late.status}; "
        f"exit {code} after {exited_in:.2f} s"
    )
    assert uploaded == (200, "close")
    assert curl_status == "200"
    assert [o.status for o in answered] == [200] * 3
    assert late.status == 200
    assert code == 0, output[-2000:]
    assert exited_in < grace, "the drain waited out the grace"
    assert "drained: every request accepted was answered" in output


async def test_at_the_drain_s_cut_uploads_still_incomplete_get_a_503_the_client_can_read(
    servers: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    grace = 3.0  # the cut comes 1 s before the end of the grace, at 2 s
    server = servers({"WORKERS": "2", "SHUTDOWN_GRACE_SECONDS": str(grace)})
    body = json.dumps({"text": "NASA launched the shuttle into orbit"}).encode()
    head = request("POST", "/prediction", b"", {"Content-Length": str(len(body))})
    stalled = [asyncio.create_task(exchange(server.url, [head, body[:10]], give_up_after=20)) for _ in range(5)]
    curl_upload = slow_upload_with_curl(server.url, " ".join(prose(1, 200_000)), 20_000, tmp_path)  # 10 s
    await asyncio.sleep(0.5)  # every upload has sent its head and part of its body
    server.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    cut = await asyncio.gather(*stalled)
    cut_after = time.monotonic() - signalled
    curl_status = (await asyncio.to_thread(curl_upload.communicate, timeout=20))[0]
    code = await asyncio.to_thread(server.proc.wait, grace + 5)
    exited_in = time.monotonic() - signalled
    output = server.stop()
    print(
        f"stalled uploads {[r.statuses for r in cut]} after {cut_after:.2f} s; curl {curl_status}; "
        f"exit {code} after {exited_in:.2f} s"
    )
    assert [r.statuses for r in cut] == [[503]] * 5
    assert all(r.responses[0].header("Connection") == "close" for r in cut)
    assert all(r.responses[0].json()["error"] == "model_unavailable" for r in cut)
    assert curl_status == "503"
    assert code == 0, output[-2000:]
    assert exited_in < grace + 1
    assert "drain cut after 2 s" in output


async def test_shutdown_with_a_hung_worker_ends_within_the_grace(servers: Callable[..., ServerProcess]) -> None:
    grace = 3.0
    server = servers(
        {
            "WORKERS": "2",
            "SHUTDOWN_GRACE_SECONDS": str(grace),
            "INFERENCE_TIMEOUT_SECONDS": "60",
            "MAX_BODY_BYTES": str(8 * 2**20),
        }
    )
    family = descendants(server.proc.pid)
    victim = worker_pids(server.proc.pid)[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        os.kill(victim, signal.SIGSTOP)
        held = [asyncio.create_task(send(http, server.url + "/predictions", SLOW_BATCH)) for _ in range(2)]
        await asyncio.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        outcomes = await asyncio.gather(*held)
    code = await asyncio.to_thread(server.proc.wait, grace + 10)
    exited_in = time.monotonic() - signalled
    output = server.stop()
    print(f"hung worker, SIGTERM: exit {code} after {exited_in:.2f} s; requests {[o.status for o in outcomes]}")
    assert code == 0, output[-2000:]
    assert exited_in < grace + 0.5
    assert {o.status for o in outcomes} <= {200, 503}, outcomes
    wait_for(lambda: all(gone(pid) for pid in family), within=5)


@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT),
        (signal.SIGHUP,),
        (signal.SIGQUIT,),
    ],
    ids=lambda signals: "-".join(signal.Signals(s).name for s in signals),
)
async def test_repeated_or_mixed_signals_lose_no_answer_and_exit_0(
    servers: Callable[..., ServerProcess], signals: tuple[int, ...]
) -> None:
    server = servers({"WORKERS": "2", "SHUTDOWN_GRACE_SECONDS": "15", "MAX_BODY_BYTES": str(8 * 2**20)})
    family = descendants(server.proc.pid)
    outcomes: list[Outcome] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        held = [asyncio.create_task(send(http, server.url + "/predictions", LONGER_BATCH)) for _ in range(6)]
        await asyncio.sleep(0.5)
        for signum in signals:  # while the six are still being computed
            server.proc.send_signal(signum)
            await asyncio.sleep(0.3)
        outcomes = await asyncio.gather(*held)
    code = await asyncio.to_thread(server.proc.wait, 20)
    output = server.stop()
    print(f"{[signal.Signals(s).name for s in signals]}: answers {[o.status for o in outcomes]}, exit {code}")
    assert [o.status for o in outcomes] == [200] * 6, [o.error or o.body for o in outcomes]
    assert code == 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    wait_for(lambda: all(gone(pid) for pid in family), within=5)


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_a_sigterm_before_the_service_is_up_stops_it_at_once(delay: float) -> None:
    """Exit 0, or (in the first instants, before Python runs the service's first line) the
    signal's own end, which a shell or a container reports as 143."""
    server = ServerProcess(env={"WORKERS": "2"})
    time.sleep(delay)
    family = descendants(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - started
    output = server.stop()
    print(f"SIGTERM {delay} s after start: exit {code} after {took:.2f} s")
    assert code == 0 or (delay == 0 and code == -signal.SIGTERM), output
    assert took < 5
    assert "Traceback" not in output, output
    wait_for(lambda: all(gone(pid) for pid in family), within=5)


def test_signals_while_the_drained_service_exits_change_nothing() -> None:
    """After the drain, on its way out, the process still ignores stop signals: exit 0, never 143."""
    server = ServerProcess(env={"WORKERS": "1", "LOG_FORMAT": "json"})
    server.wait_ready()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while b'"message":"stopped"' not in os.pread(server.log.fileno(), 1 << 20, 0):
        assert time.monotonic() < deadline, "the service did not stop"
        time.sleep(0.001)
    signalled = 0
    while server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        signalled += 1
        time.sleep(0.001)
    output = server.stop()
    print(f"{signalled} SIGTERMs after the drain ended; exit {server.proc.returncode}")
    assert signalled > 0, "the process had exited before the test could signal it"
    assert server.proc.returncode == 0, output[-2000:]
