"""Abandoned work: a client that sends a batch and leaves takes its queued texts with it, counted
as 499 in the metrics and the access log, and the next client does not wait behind them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable

import aiohttp
import pytest

from bench.http1 import request
from bench.servers import ServerProcess
from tests.e2e.helpers import scrape, send, total
from tests.helpers import prose

pytestmark = pytest.mark.e2e

TEXTS = 256
#: 256 texts of 8000 characters of test-set prose (2 MB): a fifth of a second of two workers' time.
BATCH = json.dumps({"texts": prose(TEXTS, 8000)}).encode()


def send_and_leave(port: int) -> None:
    """Send a whole batch request, then close the connection before any answer."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(request("POST", "/predictions", BATCH))


async def test_clients_that_leave_cancel_their_queued_texts_and_are_counted_as_499(
    servers: Callable[..., ServerProcess],
) -> None:
    server = servers({"WORKERS": "2", "LOG_FORMAT": "text", "MAX_BODY_BYTES": str(4 * 2**20)})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        whole = await send(http, server.url + "/predictions", json.loads(BATCH))
        assert whole.status == 200
        one_batch = whole.seconds  # how long the call already running can make the next request wait
        for _ in range(30):
            await asyncio.to_thread(send_and_leave, server.port)
        await asyncio.sleep(0.3)  # their handlers notice the closed connections
        started = time.monotonic()
        answer = await send(http, server.url + "/prediction", {"text": "NASA launched the shuttle into orbit"})
        waited = time.monotonic() - started
    await asyncio.sleep(0.5)
    samples = scrape(server.url)
    abandoned = total(samples, "textclf_http_requests_total", code="499")
    answered = total(samples, "textclf_http_requests_total", route="/predictions", code="200") - 1
    computed = total(samples, "textclf_batch_size_sum") - TEXTS - 1  # less the whole batch and the next text
    output = server.stop()
    logged = [line for line in output.splitlines() if "POST /predictions 499" in line]
    print(
        f"30 batches abandoned: {abandoned:.0f} counted 499, {answered:.0f} answered anyway; "
        f"next waited {waited:.2f} s, one batch alone takes {one_batch:.2f} s; "
        f"{computed:.0f} of their {abandoned * TEXTS:.0f} texts computed"
    )
    assert answer.status == 200
    # Only what was sent to a worker before the server saw the clients leave is computed: about one
    # batch of the 30 on an idle machine, a few on a busy one; never most of them.
    assert computed <= abandoned * TEXTS / 4, "texts of clients that had left were computed"
    # 30 batches on 2 workers take 15 times one batch; the next request waits for the calls running at most.
    assert waited < 3 * one_batch, "the next request waited behind abandoned work"
    assert abandoned + answered <= 30  # a connection closed before its request was parsed reaches no handler
    # On a busy machine some connections close before their request is read; the rest must be queued
    # work enough that computing it would show.
    assert abandoned >= 5, "too few abandoned batches reached a handler to test anything"
    assert len(logged) == abandoned
    assert total(samples, "textclf_rejected_requests_total", reason="client_closed_request") == abandoned
