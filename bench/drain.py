"""``python -m bench.drain``: stops under load, and what the clients got: no request may be lost.

Each cycle starts the service, puts 20 clients on it, and stops it as a cluster does, 1 s into
the slow uploads:
  - 16 clients send ``POST /prediction`` in a loop over a kept-alive connection, and go on after
    the stop until their connection is refused;
  - 2 upload a 60 KB text in 4 s with requests (a generator body), and 2 in 3 s with
    ``curl --limit-rate``.
Every request ends one of three ways. *answered*: an HTTP status came back (200, or a 503 that
says to go elsewhere); *refused*: the connection was refused, so the client knows nothing was
sent; *lost*: it was sent and no answer came (a reset, or the connection closed under it). The
target is 0 lost.

    python -m bench.drain                          # this checkout's `python -m function`, 20 stops
    python -m bench.drain --revision 048e0aa       # another commit's code (git worktree)
    python -m bench.drain --image newsgroups-classifier:1.1.0   # the image, under `docker stop`

Writes ``bench/out/DRAIN-<name>.md`` (scratch); ``bench/DRAIN.md`` quotes the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import requests

from bench import servers
from bench.compare import checkout
from bench.data import test_texts
from bench.paths import OUT, ROOT
from bench.steps import say
from bench.tables import markdown_table, publish

STEADY, SLOW_REQUESTS, SLOW_CURL = 16, 2, 2
UPLOAD_CHARS = 60_000
STOP_AFTER = 1.0  # seconds into the slow uploads
GRACE = 20  # SHUTDOWN_GRACE_SECONDS, the default; docker stop waits GRACE + 5


class Tally:
    """Outcomes of every request of one cycle, by kind (thread-safe: uploads run in threads)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def add(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1


async def steady_client(url: str, stopped: asyncio.Event, tally: Tally) -> None:
    """Predictions one after another on one kept-alive connection until the connection is refused."""
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=GRACE + 10)) as http:
        i = 0
        while True:
            i += 1
            try:
                async with http.post(url + "/prediction", json={"text": f"the goalie stopped shot {i}"}) as answer:
                    await answer.read()
                    tally.add(f"answered {answer.status}")
            except aiohttp.ClientConnectorError:
                tally.add("refused")
                return
            except (aiohttp.ClientError, TimeoutError):
                tally.add("lost")
                if stopped.is_set():
                    return


def requests_upload(url: str, text: str, seconds: float, tally: Tally) -> None:
    """One upload with requests, its body a generator spread over ``seconds``."""
    body = json.dumps({"text": text}).encode()

    def chunks() -> Iterator[bytes]:
        step = len(body) // 20 + 1
        for i in range(0, len(body), step):
            time.sleep(seconds / 20)
            yield body[i : i + step]

    try:
        answer = requests.post(url + "/prediction", data=chunks(), headers={"Content-Type": "application/json"})
        tally.add(f"answered {answer.status_code}")
    except requests.ConnectionError as exc:
        tally.add("refused" if "Connection refused" in str(exc) else "lost")


def curl_upload(url: str, body: Path, rate: int, tally: Tally) -> None:
    """One upload with curl at ``rate`` bytes a second."""
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", str(rate),
         "-H", "Content-Type: application/json", "--data-binary", f"@{body}", url + "/prediction"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    status = result.stdout.strip()
    tally.add("refused" if result.returncode == 7 else f"answered {status}" if status != "000" else "lost")


async def cycle(url: str, stop: Callable[[], object], body: Path, text: str) -> Tally:
    """20 clients, the stop 1 s into the slow uploads, every client to its end."""
    tally = Tally()
    stopped = asyncio.Event()
    steady = [asyncio.create_task(steady_client(url, stopped, tally)) for _ in range(STEADY)]
    uploads = [asyncio.to_thread(requests_upload, url, text, 4.0, tally) for _ in range(SLOW_REQUESTS)]
    uploads += [asyncio.to_thread(curl_upload, url, body, UPLOAD_CHARS // 3, tally) for _ in range(SLOW_CURL)]
    running = [asyncio.ensure_future(u) for u in uploads]
    await asyncio.sleep(STOP_AFTER)
    stopper = asyncio.ensure_future(asyncio.to_thread(stop))
    stopped.set()
    await asyncio.gather(*steady, *running)
    await stopper
    return tally


def run_process(root: Path, cycles: int, body: Path, text: str, log: Path) -> list[Tally]:
    tallies = []
    for i in range(cycles):
        server = servers.ServerProcess({"WORKERS": "2", "LOG_FORMAT": "text"}, log_path=log, cwd=root)
        server.wait_ready()
        tallies.append(asyncio.run(cycle(server.url, server.stop, body, text)))
        say(f"stop {i + 1}: {dict(tallies[-1].counts)}")
    return tallies


def run_image(image: str, cycles: int, body: Path, text: str) -> list[Tally]:
    tallies = []
    for i in range(cycles):
        name = f"textclf-drain-{i}"
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", name, "--read-only", "--tmpfs", "/var/tmp",
             "--cpus", "2", "--memory", "1g", "-e", "LOG_FORMAT=text", image],
            check=True, capture_output=True,
        )  # fmt: skip
        # NOTE: the container's own address, as the queue-proxy reaches the service in a pod: a
        # published port goes through docker-proxy, which accepts every connection and then closes
        # those it cannot pass on, so a refused connection would look like a lost request.
        inspect = ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name]
        url = f"http://{subprocess.run(inspect, check=True, capture_output=True, text=True).stdout.strip()}:8080"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{image} not ready in 60 s")
            time.sleep(0.1)

        def stop(name: str = name) -> None:
            subprocess.run(["docker", "stop", "-t", str(GRACE + 5), name], check=True, capture_output=True)

        tallies.append(asyncio.run(cycle(url, stop, body, text)))
        say(f"docker stop {i + 1}: {dict(tallies[-1].counts)}")
    return tallies


def report(name: str, command: str, tallies: list[Tally]) -> str:
    total: collections.Counter[str] = sum((t.counts for t in tallies), collections.Counter())
    kinds = sorted(total)
    rows: list[list[object]] = [[i + 1, *(t.counts.get(k, 0) for k in kinds)] for i, t in enumerate(tallies)]
    rows.append(["all", *(total[k] for k in kinds)])
    return (
        f"# Drain under load: {name}\n\n`{command}`: {len(tallies)} stops, {STEADY} steady clients, "
        f"{SLOW_REQUESTS} requests and {SLOW_CURL} curl slow uploads each, the stop {STOP_AFTER:g} s into them.\n\n"
        f"{markdown_table(['stop', *kinds], rows)}\n\n**lost: {total.get('lost', 0)}**\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--revision", help="serve this commit's code (git worktree) instead of this checkout")
    where.add_argument("--image", help="run this image with docker, stopped by `docker stop`")
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args(argv)
    text = " ".join(test_texts())[:UPLOAD_CHARS]
    body = OUT / "drain-body.json"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_text(json.dumps({"text": text}))
    if args.image:
        name, tallies = args.image, run_image(args.image, args.cycles, body, text)
    else:
        root = checkout(args.revision) if args.revision else ROOT
        name = args.revision or "this checkout"
        tallies = run_process(root, args.cycles, body, text, OUT / "drain-server.log")
    command = "python -m bench.drain " + " ".join(argv if argv is not None else sys.argv[1:])
    slug = (args.image or args.revision or "head").replace("/", "_").replace(":", "_")
    publish(report(name, command.strip(), tallies), OUT / f"DRAIN-{slug}.md")


if __name__ == "__main__":
    main()
