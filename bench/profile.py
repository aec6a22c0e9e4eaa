"""``python -m bench.profile`` (``make bench-profile``): where the server process's time goes under load.

Starts ``python -m function`` (WORKERS=2, the real model), drives it with wrk at 64 connections,
and samples the server process with py-spy (``record --format raw --idle --threads --nonblocking``)
for ``--seconds``. Each sample of the main thread (the event loop) is put in one bucket by the
innermost frame of the service's own code it holds (``function/...``; for the decode of the body,
the line that calls ``loads``), or, with no such frame, by the library it is in (aiohttp's parser,
its response writer, asyncio, the executor's futures). Samples are wall-clock: a bucket's share of
them, times the wall time per request, is its cost in microseconds per request. The samples in no
Python frame at all (uvloop's C loop: socket reads and writes, callbacks, epoll) are split with the
main thread's CPU time from /proc into CPU spent there and time waiting (idle, or for the GIL).
The other threads of the process (the executors' result and feeder threads, the log writer) are
costed from their own CPU time in /proc. Requests are counted from the service's batch-size
histogram over the same window. Writes ``bench/out/PROFILE.md`` and the raw samples beside it.

py-spy needs ptrace (root, or ``kernel.yama.ptrace_scope`` 0). Sampling without pausing the process
(``--nonblocking``) keeps its cost low, at the price of a few torn stacks, left out and counted.
"""

from __future__ import annotations

import argparse
import functools
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine, servers
from bench.data import write_single_bodies
from bench.paths import OUT, ROOT
from bench.procs import thread_cpu_seconds
from bench.scrape import BATCH, scrape
from bench.steps import say
from bench.tables import markdown_table, publish
from bench.wrk import ensure_wrk, finish_wrk, run_wrk, start_wrk

CONNECTIONS = 64
WORKERS = 2
SETTLE_SECONDS = 2.0  # load before sampling starts
LOOP = "uvloop's C loop, no Python frame: socket reads and writes, epoll (idle), the GIL taken back"
TORN = "torn stack (left out)"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    module: str  # the path under the repository or site-packages: "function/api/body.py", "aiohttp/web_protocol.py"
    line: int

    @property
    def where(self) -> str:
        return f"{self.function} ({self.module}:{self.line})"


def module_path(file: str) -> str:
    """A file's path from its package: the part after the checkout or ``site-packages``/the stdlib's folder."""
    # NOTE: site-packages first: the virtual environment may live inside the checkout.
    for marker in ("/site-packages/", "/lib/python3."):
        if marker in file:
            rest = file.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3." and "/" in rest else rest
    root = str(ROOT) + "/"
    return file[len(root) :] if file.startswith(root) else file


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "?", 0)
    return Frame(match["function"], module_path(match["file"]), int(match["line"] or 0))


@dataclass
class Thread:
    tid: int
    name: str
    samples: Counter[tuple[Frame, ...]] = field(default_factory=Counter)


def parse_raw(text: str) -> dict[int, Thread]:
    """py-spy's raw output (``thread (TID): NAME;frame;...;frame COUNT`` a line, root first) by thread."""
    threads: dict[int, Thread] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        head, _, rest = stack.partition(": ")
        if not count.isdigit() or not head.startswith("thread ("):
            continue
        tid = int(head[len("thread (") :].rstrip(")"), 0)
        name, *frames = rest.split(";")
        thread = threads.setdefault(tid, Thread(tid, name))
        thread.samples[tuple(parse_frame(f) for f in frames if f)] += int(count)
    return threads


@functools.cache
def lines_with(module: str, needle: str) -> frozenset[int]:
    """Line numbers of ``module`` (a path under the checkout) whose text contains ``needle``."""
    try:
        source = (ROOT / module).read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(i for i, text in enumerate(source, start=1) if needle in text)


SERVICE_FILES = {
    "function/api/access_log.py": "access log line (function/api/access_log.py, function/logs.py)",
    "function/logs.py": "access log line (function/api/access_log.py, function/logs.py)",
    "function/api/validation.py": "validation (function/api/validation.py)",
    "function/api/responses.py": "answer: orjson.dumps and web.Response (function/api/responses.py)",
    "function/jsonio.py": "answer: orjson.dumps and web.Response (function/api/responses.py)",
    "function/api/handlers.py": "handler: app lookups, query string, answer dict (function/api/handlers.py)",
    "function/inference/messages.py": "batcher: decode results (function/inference/messages.py)",
    "function/inference/pool.py": "process hand-off: run_in_executor, deadline timer (pool.py, process.py)",
    "function/inference/process.py": "process hand-off: run_in_executor, deadline timer (pool.py, process.py)",
}
BATCHER = {
    "AdaptiveBatcher.predict": "batcher: submit (AdaptiveBatcher.predict)",
    "AdaptiveBatcher._finish": "batcher: batch completion, each future's result (AdaptiveBatcher._finish)",
}
METRICS = {
    "Metrics.observe_request": "metrics: observe_request (middleware)",
    "Metrics.observe_batch": "metrics: observe_batch (batcher)",
}
HAND_OFF_DONE = "process hand-off: executor futures completed on the loop (asyncio/futures.py, concurrent.futures)"


def service_bucket(frame: Frame) -> str:
    """The bucket of a sample whose innermost frame of the service's own code is ``frame``."""
    module, function = frame.module, frame.function
    if module in SERVICE_FILES:
        return SERVICE_FILES[module]
    if module == "function/api/middleware.py":
        if function == "RequestIds.__call__":
            return "middleware: request id (RequestIds)"
        if frame.line in lines_with(module, "in_flight"):
            return "metrics: in_flight gauge (middleware)"
        return "middleware: route template, X-Request-ID header, error handling (service_middleware)"
    if module == "function/api/body.py":
        if frame.line in lines_with(module, "loads("):
            return "JSON decode: orjson.loads of the body (function/api/body.py)"
        return "body: checks, budget, read (function/api/body.py)"
    if module == "function/metrics.py":
        return METRICS.get(function, f"metrics: {function}")
    if module == "function/inference/batching.py":
        return BATCHER.get(function, "batcher: dispatch (AdaptiveBatcher._dispatch, _take)")
    return f"service: {module}"


def library_bucket(stack: Sequence[Frame]) -> str:
    """The bucket of a sample in no frame of the service's own code (below the root ``serve``)."""
    modules = [f.module for f in stack]
    functions = [f.function for f in stack]
    if any(m.startswith(("concurrent/", "multiprocessing/")) for m in modules) or any(
        f.startswith("_chain_future") or f in ("_set_state", "_copy_future_state", "_call_set_state") for f in functions
    ):
        return HAND_OFF_DONE
    if any(m in ("aiohttp/web_response.py", "aiohttp/http_writer.py") for m in modules):
        return "aiohttp: response headers and writing (web_response.py, http_writer.py)"
    if "RequestHandler.data_received" in functions or any(m.startswith("aiohttp/http_parser") for m in modules):
        return "aiohttp: HTTP parsing (RequestHandler.data_received, the C parser)"
    if any(m == "aiohttp/web_urldispatcher.py" for m in modules):
        return "aiohttp: routing (web_urldispatcher.py)"
    if any(m.startswith("aiohttp/") for m in modules):
        return "aiohttp: request handling (web_protocol.py, web_request.py, web_app.py, streams.py)"
    if any(m.startswith("asyncio/") for m in modules):
        return "asyncio: tasks, futures, callbacks"
    return f"other: {stack[-1].module}"


def main_bucket(stack: tuple[Frame, ...]) -> str:
    """One main-thread sample's bucket."""
    if not stack:
        return TORN
    below_root = [f for f in stack if not (f.module == "function/__main__.py" or f.module.startswith("<frozen"))]
    if not below_root:
        return LOOP if stack[-1].module == "function/__main__.py" else TORN
    service = [f for f in below_root if f.module.startswith("function/")]
    return service_bucket(service[-1]) if service else library_bucket(below_root)


def thread_role(thread: Thread) -> str:
    """What a non-main thread of the server process does, from the functions in its samples."""
    functions = {f.function for stack in thread.samples for f in stack}
    if "_ExecutorManagerThread.run" in functions or "_ExecutorManagerThread.wait_result_broken_or_wakeup" in functions:
        return "executor result threads: read and unpickle each answer, complete its future, wake the loop"
    if "Queue._feed" in functions:
        return "executor feeder threads: pickle each call and write it to the worker's pipe"
    if "StderrLines._write_forever" in functions:
        return "log writer: the access lines to stderr"
    return f"thread {thread.name}"


@dataclass(frozen=True)
class Window:
    seconds: float
    requests: int
    thread_cpu: dict[int, float]  # tid -> CPU seconds during the window
    profiler_cpu: float
    threads: dict[int, Thread]  # py-spy's samples

    def per_request_us(self, seconds: float) -> float:
        return seconds / max(1, self.requests) * 1e6

    @property
    def wall_us(self) -> float:
        return self.per_request_us(self.seconds)


def py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("py-spy is not installed: pip install -r requirements/dev.txt")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sample(pid: int, port: int, seconds: float, rate: int, raw: Path, *flags: str) -> Window:
    """py-spy on ``pid`` for ``seconds``, with the requests answered and each thread's CPU over the same window."""
    command = [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
               "--duration", str(round(seconds)), "--idle", "--threads", "--nonblocking", "--full-filenames",
               *flags, "-o", str(raw)]  # fmt: skip
    cpu_before, texts_before, children = thread_cpu_seconds(pid), scrape(port), _children_cpu()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    elapsed = time.monotonic() - started
    cpu_after, texts_after = thread_cpu_seconds(pid), scrape(port)
    if done.returncode != 0:
        raise SystemExit(f"py-spy failed ({done.returncode}); it needs ptrace (root):\n{done.stderr}")
    key = f"{BATCH}_sum"
    return Window(
        seconds=elapsed,
        requests=int(texts_after.get(key, 0) - texts_before.get(key, 0)),
        thread_cpu={tid: cpu_after[tid] - cpu_before.get(tid, 0.0) for tid in cpu_after},
        profiler_cpu=_children_cpu() - children,
        threads=parse_raw(raw.read_text()),
    )


def main_counts(window: Window, pid: int) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Main-thread samples by bucket, and by innermost frame within each bucket."""
    counts: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    main = window.threads.get(pid, Thread(pid, "MainThread"))
    for stack, n in main.samples.items():
        bucket = main_bucket(stack)
        counts[bucket] += n
        if stack:
            leaves.setdefault(bucket, Counter())[stack[-1].where] += n
    return counts, leaves


@dataclass(frozen=True)
class Profile:
    rows: list[tuple[str, float, float]]  # bucket, wall µs per request, GIL-held µs per request
    top_frames: dict[str, list[tuple[str, float]]]  # bucket -> innermost frames, wall µs per request
    threads: list[tuple[str, int, float, float]]  # role, threads, CPU µs per request, share of a core
    main_cpu_us: float
    gil_us: float  # the main thread's GIL-held time per request
    torn: int
    samples: int


def aggregate(pid: int, wall: Window, gil: Window) -> Profile:
    """Per-request costs: main-thread buckets from both windows' samples, other threads from their CPU time.

    ``wall`` sampled the main thread whatever it did; ``gil`` only while it held the GIL, so its
    share of the instants ``wall`` shows py-spy achieves is the time the thread held the GIL.
    """
    counts, leaves = main_counts(wall, pid)
    torn = counts.pop(TORN, 0)
    instants = max(1, sum(counts.values()))
    rate = (instants + torn) / wall.seconds  # samples per second py-spy really took
    held, _ = main_counts(gil, pid)
    held.pop(TORN, 0)
    held_instants = max(1.0, rate * gil.seconds)
    buckets = sorted(set(counts) | set(held), key=lambda b: (b == LOOP, -counts.get(b, 0)))
    rows = [
        (b, counts.get(b, 0) / instants * wall.wall_us, held.get(b, 0) / held_instants * gil.wall_us) for b in buckets
    ]
    top = {b: [(w, n / instants * wall.wall_us) for w, n in leaves[b].most_common(4)] for b in buckets if b in leaves}
    roles: dict[str, list[int]] = {}
    for tid, thread in wall.threads.items():
        if tid != pid:
            roles.setdefault(thread_role(thread), []).append(tid)
    thread_rows = []
    for role, tids in sorted(roles.items()):
        cpu = sum(wall.thread_cpu.get(t, 0.0) for t in tids)
        thread_rows.append((role, len(tids), wall.per_request_us(cpu), cpu / wall.seconds))
    main_cpu = wall.per_request_us(wall.thread_cpu.get(pid, 0.0))
    gil_us = sum(held.values()) / held_instants * gil.wall_us
    return Profile(rows, top, thread_rows, main_cpu, gil_us, torn, instants + torn)


def render(p: Profile, wall: Window, gil: Window, load_line: str, seconds: float, rate: int) -> str:
    rows = [[bucket, f"{w:.1f}", f"{g:.1f}"] for bucket, w, g in p.rows]
    python_wall = sum(w for b, w, _ in p.rows if b != LOOP)
    python_gil = sum(g for b, _, g in p.rows if b != LOOP)
    rows.append(["**in Python frames**", f"**{python_wall:.1f}**", f"**{python_gil:.1f}**"])
    rows.append(["**main thread, all**", f"**{wall.wall_us:.1f}**", f"**{p.gil_us:.1f}** (CPU: {p.main_cpu_us:.1f})"])
    thread_rows = [[role, str(k), f"{us:.1f}", f"{share:.0%}"] for role, k, us, share in p.threads]
    detail = [
        f"- {b}: " + "; ".join(f"`{where}` {us:.1f}" for where, us in frames) for b, frames in p.top_frames.items()
    ]
    return "\n".join(
        [
            "# Where the event loop's time goes",
            "",
            f"`python -m bench.profile --seconds {seconds:.0f} --rate {rate}` on {machine.describe()}: "
            f"`python -m function` (WORKERS={WORKERS}, the real model) under wrk at {CONNECTIONS} connections "
            f"({load_line}). py-spy sampled the server process twice, {wall.seconds:.0f} s each: every "
            f"instant ({p.samples} main-thread samples, {p.torn} torn ones left out; {wall.requests} requests, "
            f"{wall.requests / wall.seconds:.0f}/s), then only while a thread held the GIL ({gil.requests} "
            f"requests, {gil.requests / gil.seconds:.0f}/s); py-spy itself used "
            f"{wall.profiler_cpu / wall.seconds:.0%} and {gil.profiler_cpu / gil.seconds:.0%} of a core.",
            "",
            "Microseconds per request = share of the instants x time per request. **wall**: the event loop "
            "is one thread, so its wall time per request bounds throughput, and a frame that waits (a system "
            "call, the GIL taken by an executor thread, a core taken by another process) costs as much as "
            "one that computes. **GIL held**: the time the main thread ran Python code (the CPU time that "
            "work in Python costs; uvloop's C loop does its system calls without the GIL). The main thread's "
            "CPU time from /proc is given beside.",
            "",
            markdown_table(["main thread (event loop)", "wall µs per request", "GIL held µs per request"], rows),
            "",
            "The server process's other threads, from their CPU time in /proc (they take the GIL from the "
            "event loop while they run Python code):",
            "",
            markdown_table(["thread", "threads", "CPU µs per request", "share of a core"], thread_rows),
            "",
            "Innermost frames of each bucket (wall µs per request):",
            "",
            *detail,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling time of each of the two windows")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=OUT / "PROFILE.md")
    args = parser.parse_args(argv)
    ensure_wrk()
    py_spy()
    bodies = write_single_bodies(OUT / "bodies-single.jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with servers.running(servers.SERVICE, {"WORKERS": str(WORKERS)}, OUT / "logs" / "profile.log") as server:
        url = server.url("/prediction")
        run_wrk(url, bodies, 16, 2)  # warm-up
        say(f"wrk at {CONNECTIONS} conns; py-spy on pid {server.pid}, twice {args.seconds:.0f} s at {args.rate} Hz")
        load_seconds = 2 * args.seconds + 2 * SETTLE_SECONDS + 5
        wrk = start_wrk(url, bodies, CONNECTIONS, load_seconds)
        try:
            time.sleep(SETTLE_SECONDS)
            wall = sample(server.pid, server.port, args.seconds, args.rate, args.out.with_suffix(".wall.txt"))
            gil = sample(server.pid, server.port, args.seconds, args.rate, args.out.with_suffix(".gil.txt"), "--gil")
        finally:
            load = finish_wrk(wrk, CONNECTIONS, 1, load_seconds + 30)
    load_line = (
        f"over {load.seconds:.0f} s: {load.ok_rps:.0f} 2xx/s, p99 {load.latency_ms['p99']:.1f} ms, "
        f"{load.non_2xx} non-2xx, {load.socket_errors} socket errors"
    )
    publish(render(aggregate(server.pid, wall, gil), wall, gil, load_line, args.seconds, args.rate), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
