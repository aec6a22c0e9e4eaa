"""``python -m bench.memory``: the service's memory by situation, to size a container.

One fresh ``python -m function`` (WORKERS=2 unless set) goes through: idle after start; a few
hundred ordinary requests; bursts of concurrent ~1 MiB texts (the body limit's worth, the worst a
client may send); and 300 uploads that stall just short of 1 MiB. Short requests (4 clients) are
timed beside each burst. Each row is the whole process tree (server, forkserver, resource
tracker, workers) from /proc: the highest total seen while the step ran (sampled every 20 ms), and
the total again once the service has been quiet for a few seconds (the heap trim has run).

As root, where a memory cgroup can be made, the server runs in one of ``--limit`` MiB (the pod's
1 GiB by default), so that its budgets come from that limit as in the pod, and the report adds
the cgroup's peak and its OOM kills. Writes ``bench/MEMORY.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import machine, servers
from bench.data import test_texts
from bench.paths import BENCH, OUT
from bench.procs import total_pss_mb, total_rss_mb, tree_memory
from bench.results import QUIET_SECONDS
from bench.tables import markdown_table, publish
from tests.e2e.helpers import MemoryCgroup  # the tests' cgroup and body, so both measure the same way
from tests.helpers import text_body

BODY_BYTES = 1024 * 1024 - 100  # just under the default MAX_BODY_BYTES (1 MiB)
STALLED = 300


@dataclass(frozen=True)
class Row:
    situation: str
    answers: str
    short_p99_ms: float | None
    peak_rss_mb: float
    quiet_rss_mb: float
    quiet_pss_mb: float | None


class PeakSampler:
    """The highest summed RSS of a process tree while the ``with`` block runs."""

    def __init__(self, root: int, interval: float = 0.02) -> None:
        self._root, self._interval = root, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_mb = 0.0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, total_rss_mb(tree_memory(self._root)))
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, total_rss_mb(tree_memory(self._root)))


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


class ShortRequests:
    """Four clients sending one short test text after another while the ``with`` block runs."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(4)]
        self.seconds: list[float] = []

    def _client(self, index: int) -> None:
        bodies = [json.dumps({"text": t}).encode() for t in test_texts()[index::4][:200]]
        while not self._stop.is_set():
            started = time.perf_counter()
            post(self._url, bodies[len(self.seconds) % len(bodies)])
            self.seconds.append(time.perf_counter() - started)
            self._stop.wait(0.01)

    def __enter__(self) -> ShortRequests:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def p99_ms(self) -> float | None:
        ordered = sorted(self.seconds)
        return ordered[int(0.99 * (len(ordered) - 1))] * 1000 if ordered else None


def stalled_uploads(port: int, body: bytes, count: int) -> Counter[str]:
    """``count`` connections that send all of ``body`` but its last 100 bytes, then nothing: the statuses."""
    head = (
        "POST /prediction HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one() -> str:
        reader, writer = await asyncio.open_connection(servers.HOST, port)
        writer.write(head + body[:-100])
        try:
            answer = await asyncio.wait_for(reader.read(200), 60)
        finally:
            writer.close()
        return answer.split(b" ")[1].decode() if answer else "closed"

    async def all_of_them() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(count)))

    return Counter(asyncio.run(all_of_them()))


def measure(server: servers.ServerProcess, situation: str, step: Callable[[], str], quiet: float, short: bool) -> Row:
    shorts = ShortRequests(server.url + "/prediction")
    with PeakSampler(server.pid) as sampler:
        if short:
            with shorts:
                time.sleep(0.3)
                answers = step()
        else:
            answers = step()
    time.sleep(quiet)
    after = tree_memory(server.pid)
    row = Row(situation, answers, shorts.p99_ms(), sampler.peak_mb, total_rss_mb(after), total_pss_mb(after))
    print(f"  {situation}: {answers}; peak {row.peak_rss_mb:.0f} MB, {quiet:.0f} s later {row.quiet_rss_mb:.0f} MB")
    return row


def tally(statuses: Sequence[int | str]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(Counter(statuses).items(), key=str))


def run(workers: int, bursts: Sequence[int], quiet: float, cgroup: MemoryCgroup | None) -> list[Row]:
    texts = test_texts()
    big = text_body(BODY_BYTES)
    log = OUT / "logs" / "memory.log"
    env = {"WORKERS": str(workers), "ACCESS_LOG": "false", "BODY_TIMEOUT_SECONDS": "5"}
    with servers.ServerProcess(env, log_path=log, preexec_fn=cgroup.join if cgroup else None) as server:
        single, batch = server.url + "/prediction", server.url + "/predictions"

        def ordinary() -> str:
            statuses = [post(single, json.dumps({"text": text}).encode()) for text in texts[:300]]
            statuses += [post(batch, json.dumps({"texts": texts[i * 32 : (i + 1) * 32]}).encode()) for i in range(4)]
            return tally(statuses)

        def burst(n: int) -> Callable[[], str]:
            def send() -> str:
                with ThreadPoolExecutor(n) as pool:
                    return tally(list(pool.map(lambda _: post(single, big), range(n))))

            return send

        def stalled() -> str:
            return tally(list(stalled_uploads(server.port, big, STALLED).elements()))

        rows = [measure(server, "idle after start", lambda: "", quiet, short=False)]
        rows.append(measure(server, "300 single + 4 batch requests of 32 test texts", ordinary, quiet, short=False))
        rows += [measure(server, f"{n} concurrent requests of a 1 MiB text", burst(n), quiet, True) for n in bursts]
        rows.append(measure(server, f"{STALLED} uploads stalled 100 bytes short of 1 MiB", stalled, quiet, True))
    return rows


def render(rows: Sequence[Row], workers: int, quiet: float, cgroup: MemoryCgroup | None) -> str:
    table = markdown_table(
        [
            "situation",
            "answers",
            "short requests p99 ms",
            "RSS MB, highest during",
            f"RSS MB, {quiet:.0f} s later",
            f"PSS MB, {quiet:.0f} s later",
        ],
        [
            [
                r.situation,
                r.answers or "",
                f"{r.short_p99_ms:.0f}" if r.short_p99_ms is not None else "",
                f"{r.peak_rss_mb:.0f}",
                f"{r.quiet_rss_mb:.0f}",
                f"{r.quiet_pss_mb:.0f}" if r.quiet_pss_mb is not None else "n/a",
            ]
            for r in rows
        ],
    )
    where = (
        f"in a memory cgroup of {cgroup.limit // 2**20} MiB (the budgets derived from it, as in the pod): "
        f"the cgroup's peak was {cgroup.peak() / 1e6:.0f} MB (page cache included) and the kernel's OOM killer "
        f"killed {cgroup.oom_kills()} processes"
        if cgroup
        else "with no memory cgroup (the budgets assume the pod's 1 GiB)"
    )
    return "\n".join(
        [
            "# Memory by situation",
            "",
            f"Machine: {machine.describe()}. `python -m bench.memory`: one fresh `python -m function` "
            f"(WORKERS={workers}, BODY_TIMEOUT_SECONDS=5) through the situations below, in order, {where}. "
            "Totals over the server and every descendant (forkserver, resource tracker, workers), from /proc, "
            f"sampled every 20 ms while a situation runs and read again after {quiet:.0f} s without requests. RSS "
            "counts pages shared between processes in each of them; PSS divides them among the sharers. "
            "MB = 10^6 bytes. Answers: HTTP statuses (503: past the budget of request bytes in memory, answered "
            "from the headers; 408: a stalled upload within the budget, at the body timeout). Short requests: "
            "4 clients sending test texts one after another beside the burst.",
            "",
            table,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bursts", type=int, nargs="+", default=[8, 24, 64], help="concurrent 1 MiB texts")
    parser.add_argument("--quiet", type=float, default=QUIET_SECONDS, help="seconds without requests before reading")
    parser.add_argument("--limit", type=int, default=1024, help="MiB of the memory cgroup (0: none)")
    parser.add_argument("--out", type=Path, default=BENCH / "MEMORY.md")
    args = parser.parse_args(argv)
    cgroup = MemoryCgroup(args.limit * 2**20) if args.limit and MemoryCgroup.unavailable() is None else None
    try:
        rows = run(args.workers, args.bursts, args.quiet, cgroup)
        publish(render(rows, args.workers, args.quiet, cgroup), args.out)
    finally:
        if cgroup:
            cgroup.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
