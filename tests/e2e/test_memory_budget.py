"""Memory bounded by bytes: a server in a memory cgroup of the pod's limit (and of half of it) takes
64 concurrent 1 MiB texts, then 300 uploads stalled just short of 1 MiB, without an OOM kill,
with its process tree under the limit, while short requests keep answering within a second.

The budgets come from the cgroup limit the server finds itself in (``function.budgets``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator

import aiohttp
import pytest

from bench.procs import tree_pss_bytes, tree_rss_bytes
from tests.e2e.helpers import JSON, MemoryCgroup, sample, scrape, start_server
from tests.helpers import split_texts, text_body

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MemoryCgroup.unavailable() is not None, reason=str(MemoryCgroup.unavailable())),
]

MiB = 1024 * 1024
TEXTS = split_texts()
SHORT_BODIES = [json.dumps({"text": text}).encode() for text in TEXTS[:100]]


BIG = text_body(MiB - 100)  # just under the default MAX_BODY_BYTES


class Watched:
    """A server in its own memory cgroup, its tree's RSS sampled, short requests timed meanwhile."""

    def __init__(self, limit: int, env: dict[str, str]) -> None:
        self.cgroup = MemoryCgroup(limit)
        base = {"WORKERS": "2", "LOG_FORMAT": "text", "ACCESS_LOG": "false"}
        self.server = start_server(base | env, preexec_fn=self.cgroup.join)
        self.peak_rss = 0
        self.peak_pss = 0
        self.short: list[tuple[float, int]] = []  # (seconds, status)

    async def while_running(self, load: asyncio.Future[object]) -> None:
        """Sample RSS and send short requests (4 clients) until ``load`` is done."""

        async def sampler() -> None:
            while not load.done():
                pid = self.server.proc.pid
                self.peak_rss = max(self.peak_rss, tree_rss_bytes(pid))
                self.peak_pss = max(self.peak_pss, tree_pss_bytes(pid))
                await asyncio.sleep(0.02)

        async def short_client(http: aiohttp.ClientSession, index: int) -> None:
            while not load.done():
                started = time.monotonic()
                async with http.post(self.server.url + "/prediction", data=SHORT_BODIES[index], headers=JSON) as r:
                    await r.read()
                self.short.append((time.monotonic() - started, r.status))
                index = (index + 4) % len(SHORT_BODIES)
                await asyncio.sleep(0.01)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await asyncio.gather(sampler(), *(short_client(http, i) for i in range(4)), load)

    def short_p99(self) -> float:
        seconds = sorted(s for s, _ in self.short)
        return seconds[int(len(seconds) * 0.99)]

    def check(self, what: str) -> None:
        restarts = sample(scrape(self.server.url), "textclf_pool_worker_restarts_total")
        limit = self.cgroup.limit
        print(
            f"{what} at {limit // MiB} MiB: tree PSS peak {self.peak_pss / MiB:.0f} MiB (RSS, shared pages "
            f"counted in each process: {self.peak_rss / MiB:.0f} MiB), cgroup peak "
            f"{self.cgroup.peak() / MiB:.0f} MiB, {self.cgroup.oom_kills()} OOM kills, {restarts:.0f} restarts; "
            f"{len(self.short)} short requests, p99 {self.short_p99() * 1000:.0f} ms"
        )
        assert self.cgroup.oom_kills() == 0
        assert restarts == 0
        # NOTE: PSS, not the sum of RSS, which counts the model's pages once for each process that maps
        # them: about 100 MiB more than the tree holds.
        assert self.peak_pss < limit, f"the process tree reached {self.peak_pss / MiB:.0f} MiB"
        assert self.short, "no short request was answered meanwhile"
        assert {status for _, status in self.short} == {200}
        assert self.short_p99() < 1.0

    def close(self) -> None:
        if not self.server.log.closed:
            self.server.stop()
        self.cgroup.remove()


@pytest.fixture(params=[1024 * MiB, 512 * MiB], ids=["1GiB", "512MiB"])
def watched(request: pytest.FixtureRequest) -> Iterator[Watched]:
    served = Watched(request.param, {"BODY_TIMEOUT_SECONDS": "5"})
    try:
        yield served
    finally:
        served.close()


async def test_64_concurrent_1_mib_texts_stay_under_the_limit_and_short_requests_go_on(watched: Watched) -> None:
    outcomes: list[int | str] = []

    async def big(http: aiohttp.ClientSession) -> None:
        try:
            async with http.post(watched.server.url + "/prediction", data=BIG, headers=JSON) as response:
                await response.read()
                outcomes.append(response.status)
        except aiohttp.ClientError as error:
            outcomes.append(type(error).__name__)

    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        await asyncio.sleep(0.5)  # short requests first, then the burst beside them
        await watched.while_running(asyncio.ensure_future(asyncio.gather(*(big(http) for _ in range(64)))))
    print(f"64 texts of 1 MiB: {Counter(outcomes)}")
    watched.check("64 x 1 MiB")
    assert set(outcomes) <= {200, 503}, "a connection was cut or a request failed"
    assert outcomes.count(200) >= 1


async def test_300_uploads_stalled_short_of_1_mib_stay_under_the_limit(watched: Watched) -> None:
    head = (
        "POST /prediction HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BIG)}\r\n\r\n"
    ).encode()
    refused_in: list[float] = []
    outcomes: list[str] = []

    async def stalled() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", watched.server.port)
        started = time.monotonic()
        writer.write(head + BIG[:-100])  # all but the last 100 bytes, then nothing
        answer = await asyncio.wait_for(reader.read(200), 30)
        status = answer.split(b" ")[1].decode() if answer else "closed"
        outcomes.append(status)
        if status == "503":
            refused_in.append(time.monotonic() - started)
        writer.close()

    await watched.while_running(asyncio.ensure_future(asyncio.gather(*(stalled() for _ in range(300)))))
    print(f"300 stalled uploads: {Counter(outcomes)}; 503 after at most {max(refused_in, default=0):.2f} s")
    watched.check("300 stalled uploads")
    # Past the budget: 503 from the headers alone, at once; within it: read, then 408 at the body timeout.
    assert set(outcomes) <= {"503", "408"}, Counter(outcomes)
    assert outcomes.count("503") > 100
    assert max(refused_in) < 2.0
