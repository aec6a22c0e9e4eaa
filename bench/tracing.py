"""``python -m bench.tracing``: what OpenTelemetry spans cost the service (``function.tracing``).

Per request: one server span and four phases (read body, queue wait, inference, encode). Measured:
the event loop's side (``Tracer.keeps``, kept and sampled out; ``Tracer.record``, with and without
building its arguments; queue full), the export thread's side (encoding a batch of 512 requests;
encoding and POSTing it to a collector in another process that reads each body and answers 200), and a
paced run of a started tracer at ``--rate`` requests a second against that collector: CPU of the whole
process per request, beside the same pacing without a tracer. Microbenchmarks report the best of
``--repeats`` runs (the machine is shared).

    python -m bench.tracing [--repeats 7 --rate 5000 --seconds 4]

Writes ``bench/out/TRACING.md`` (scratch); the README quotes the figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from bench import machine
from bench.paths import OUT
from bench.servers import HOST, free_port
from bench.tables import markdown_table, publish
from function.tracing.collector import Collector
from function.tracing.config import TracingConfig, tracing_config
from function.tracing.otlp import Encoder, Record
from function.tracing.tracer import Tracer

TRACE, CALLER, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a1b2c3d400000001"
SAMPLED, NOT_SAMPLED = f"00-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-00"  # answers' traceparents
BATCH = 512
SPANS = 5
#: A collector that reads each POST and answers 200 with an empty body, over kept-alive HTTP/1.1.
SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Sink).serve_forever()
"""


def config(endpoint: str, **env: str) -> TracingConfig:
    read = tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env})
    assert read is not None
    return read.with_resource({"service.name": "bench"})


def record_args(t0: float) -> tuple[Any, ...]:
    phases = (("read body", t0, t0 + 1e-4), ("queue wait", t0 + 1e-4, t0 + 3e-4),
              ("inference", t0 + 3e-4, t0 + 7e-4), ("encode", t0 + 7e-4, t0 + 9e-4))  # fmt: skip
    return (TRACE, CALLER, SPAN, "POST", "/prediction", "/prediction", 200, t0, t0 + 9e-4, phases, ())


def best_us(fn: Callable[[], object], number: int, repeats: int, setup: Callable[[], object] = lambda: None) -> float:
    """The least CPU time of this thread over ``repeats`` runs of ``number`` calls, in µs per call."""
    runs = []
    for _ in range(repeats):
        setup()
        runs.append(timeit.timeit(fn, number=number, timer=time.thread_time) / number * 1e6)
    return min(runs)


def loop_side(endpoint: str, repeats: int) -> list[list[object]]:
    number = 100_000
    tracer = Tracer(config(endpoint, OTEL_BSP_MAX_QUEUE_SIZE=str(number)))  # not started: nothing is exported
    ready = record_args(time.monotonic())
    full = Tracer(config(endpoint, OTEL_BSP_MAX_QUEUE_SIZE="1", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1"))
    full.record(*ready)

    def as_the_middleware_would() -> None:
        t0 = time.perf_counter()
        phases = (("read body", t0, t0), ("queue wait", t0, t0), ("inference", t0, t0), ("encode", t0, t0))
        tracer.record(TRACE, CALLER, SPAN, "POST", "/prediction", "/prediction", 200, t0, t0, phases)

    clear = tracer._queue.clear
    rows = {
        "keeps(), the caller's flag says sampled": best_us(lambda: tracer.keeps(SAMPLED), number, repeats),
        "keeps(), the caller's flag says not sampled": best_us(lambda: tracer.keeps(NOT_SAMPLED), number, repeats),
        "record(), arguments ready": best_us(lambda: tracer.record(*ready), number, repeats, clear),
        "record(), its phases built, the clock read": best_us(as_the_middleware_would, number, repeats, clear),
        "record(), queue full (dropped, counted)": best_us(lambda: full.record(*ready), number, repeats),
    }
    return [[name, f"{us:.2f}"] for name, us in rows.items()]


def export_side(endpoint: str, repeats: int) -> list[list[object]]:
    ready = record_args(time.monotonic())
    records: list[Record] = [ready] * BATCH  # a record is record()'s arguments
    server_only: list[Record] = [(*ready[:9], (), ())] * BATCH
    encoder = Encoder(config(endpoint).resource)
    collector = Collector(config(endpoint))
    offset = time.time_ns() - time.monotonic_ns()
    body = encoder.encode(records, offset)
    assert collector.post(body) is None, "the collector did not answer 200"
    encode = best_us(lambda: encoder.encode(records, offset), 20, repeats) / BATCH
    encode_server = best_us(lambda: encoder.encode(server_only, offset), 20, repeats) / BATCH
    post = best_us(lambda: collector.post(encoder.encode(records, offset)), 20, repeats) / BATCH
    collector.close()
    return [
        ["encode, 1 server span + 4 phases", f"{encode:.2f}", f"{encode / SPANS:.2f}"],
        ["encode, a server span alone", f"{encode_server:.2f}", f"{encode_server:.2f}"],
        ["encode + POST", f"{post:.2f}", f"{post / SPANS:.2f}"],
        [f"POST body, bytes ({BATCH} requests)", str(len(body)), f"{len(body) / BATCH / SPANS:.0f}"],
    ]


def paced(endpoint: str, rate: int, seconds: float, traced: bool) -> tuple[float, float, int]:
    """CPU µs per request of the pacing thread and of the whole process; spans dropped."""
    tracer = Tracer(config(endpoint, OTEL_BSP_SCHEDULE_DELAY="1000")) if traced else None
    if tracer is not None:
        tracer.start()
    process, thread, start, n = time.process_time(), time.thread_time(), time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        while n < int(elapsed * rate):
            if tracer is not None:
                tracer.record(*record_args(time.perf_counter()))
            n += 1
        time.sleep(0.001)
    thread_us = (time.thread_time() - thread) / n * 1e6
    if tracer is not None:
        tracer.shutdown(10.0)
    counts = tracer.counts() if tracer is not None else None
    dropped = counts.dropped_queue_full + counts.dropped_export_failed if counts else 0
    return thread_us, (time.process_time() - process) / n * 1e6, dropped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rate", type=int, default=5000, help="requests a second in the paced run")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each paced run")
    args = parser.parse_args(argv)
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, HOST, str(port)])
    try:
        time.sleep(0.5)
        endpoint = f"http://{HOST}:{port}"
        loop = loop_side(endpoint, args.repeats)
        export = export_side(endpoint, args.repeats)
        runs = {traced: paced(endpoint, args.rate, args.seconds, traced) for traced in (False, True)}
    finally:
        sink.terminate()
        sink.wait()
    off, on = runs[False], runs[True]
    report = (
        f"# What spans cost\n\n`python -m bench.tracing --repeats {args.repeats} --rate {args.rate} "
        f"--seconds {args.seconds:g}`. Machine: {machine.describe()}.\n\n"
        "## The event loop's side (per request)\n\n"
        + markdown_table(["call", "µs"], loop)
        + "\n\n## The export thread's side (batches of 512 requests)\n\n"
        + markdown_table(["work", "µs per request", "µs per span"], export)
        + f"\n\n## Paced: {args.rate} requests a second for {args.seconds:g} s, a collector in another process\n\n"
        + markdown_table(
            ["", "pacing thread µs/request", "whole process µs/request", "spans dropped"],
            [
                ["no tracer", f"{off[0]:.1f}", f"{off[1]:.1f}", "-"],
                ["tracer", f"{on[0]:.1f}", f"{on[1]:.1f}", str(on[2])],
            ],
        )
        + f"\n\nSpans cost the process **{on[1] - off[1]:.1f} µs a request** (whole process, tracer minus none).\n"
    )
    publish(report, OUT / "TRACING.md")


if __name__ == "__main__":
    main()
