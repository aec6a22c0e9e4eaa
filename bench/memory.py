"""``python -m bench.memory``: the service's resident memory by situation, to size a container.

One fresh ``python -m function`` (WORKERS=2 unless set) goes through: idle after start; a few
hundred ordinary requests; then bursts of concurrent ~1 MB texts (the body limit's worth, the
worst a client may send). Each row is the whole process tree (server, forkserver, resource
tracker, workers) from /proc: the highest total seen while the step ran (sampled every 20 ms),
and the total again once the service has been quiet for a few seconds (the heap trim has run).
Writes ``bench/MEMORY.md``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.request
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

BIG_TEXT_CHARS = 1_000_000  # a body just under the default MAX_BODY_BYTES (1 MiB)


@dataclass(frozen=True)
class Row:
    situation: str
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


def post(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()
        return int(answer.status)


def measure(server: servers.Server, situation: str, step: Callable[[], None], quiet: float) -> Row:
    with PeakSampler(server.pid) as sampler:
        step()
    time.sleep(quiet)
    after = tree_memory(server.pid)
    row = Row(situation, sampler.peak_mb, total_rss_mb(after), total_pss_mb(after))
    print(f"  {situation}: peak {row.peak_rss_mb:.0f} MB, {quiet:.0f} s later {row.quiet_rss_mb:.0f} MB", flush=True)
    return row


def run(workers: int, bursts: Sequence[int], quiet: float) -> list[Row]:
    texts = test_texts()
    big = ("orbit shuttle goalie puck encryption key " * (BIG_TEXT_CHARS // 42 + 1))[:BIG_TEXT_CHARS]
    log = OUT / "logs" / "memory.log"
    with servers.running(servers.SERVICE, {"WORKERS": str(workers)}, log) as server:
        single, batch = server.url("/prediction"), server.url("/predictions")

        def ordinary() -> None:
            for text in texts[:300]:
                post(single, {"text": text})
            for i in range(4):
                post(batch, {"texts": texts[i * 32 : (i + 1) * 32]})

        def burst(n: int) -> Callable[[], None]:
            def send() -> None:
                with ThreadPoolExecutor(n) as pool:
                    statuses = list(pool.map(lambda _: post(single, {"text": big}), range(n)))
                if any(status != 200 for status in statuses):
                    raise RuntimeError(f"a 1 MB text was not answered 200: {statuses}")

            return send

        rows = [measure(server, "idle after start", lambda: None, quiet)]
        rows.append(measure(server, "300 single + 4 batch requests of 32 test texts", ordinary, quiet))
        rows += [measure(server, f"{n} concurrent requests of a 1 MB text", burst(n), quiet) for n in bursts]
    return rows


def render(rows: Sequence[Row], workers: int, quiet: float) -> str:
    table = markdown_table(
        ["situation", "RSS MB, highest during", f"RSS MB, {quiet:.0f} s later", f"PSS MB, {quiet:.0f} s later"],
        [
            [
                r.situation,
                f"{r.peak_rss_mb:.0f}",
                f"{r.quiet_rss_mb:.0f}",
                f"{r.quiet_pss_mb:.0f}" if r.quiet_pss_mb is not None else "n/a",
            ]
            for r in rows
        ],
    )
    return "\n".join(
        [
            "# Resident memory by situation",
            "",
            f"Machine: {machine.describe()}. `python -m bench.memory`: one fresh `python -m function` "
            f"(WORKERS={workers}) through the situations below, in order. Totals over the server and every "
            "descendant (forkserver, resource tracker, workers), from /proc, sampled every 20 ms while a "
            f"situation runs and read again after {quiet:.0f} s without requests. RSS counts pages shared "
            "between processes in each of them; PSS divides them among the sharers. MB = 10^6 bytes.",
            "",
            table,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bursts", type=int, nargs="+", default=[8, 24], help="concurrent 1 MB texts")
    parser.add_argument("--quiet", type=float, default=QUIET_SECONDS, help="seconds without requests before reading")
    parser.add_argument("--out", type=Path, default=BENCH / "MEMORY.md")
    args = parser.parse_args(argv)
    rows = run(args.workers, args.bursts, args.quiet)
    publish(render(rows, args.workers, args.quiet), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
