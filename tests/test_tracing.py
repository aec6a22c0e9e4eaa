"""Spans exported by ``function.tracing`` to a real OTLP/HTTP receiver that decodes them with opentelemetry-proto;
dead, hung and failing collectors; a full queue; sampling; what is imported when tracing is off."""

from __future__ import annotations

import ast
import asyncio
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bench.servers import free_port
from function.tracing.config import tracing_config
from function.tracing.otlp import Encoder
from function.tracing.tracer import SpanCounts, Tracer
from tests.helpers import ROOT
from tests.otlp_receiver import OtlpReceiver, attributes, hung_collector, spans_of, tree

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"
SPAN = "a1b2c3d400000001"
MS = 0.001


def request(t0: float, *, trace: str | None = TRACE, span: str | None = SPAN, status: int = 200) -> dict[str, object]:
    """``Tracer.record``'s arguments for a 9 ms POST /prediction with four phases (1, 2, 4 and 1 ms)."""
    return {
        "trace_id": trace,
        "parent_id": CALLER if trace else None,
        "span_id": span,
        "method": "POST",
        "route": "/prediction",
        "path": "/prediction",
        "status": status,
        "started": t0,
        "ended": t0 + 9 * MS,
        "phases": (
            ("read body", t0, t0 + 1 * MS),
            ("queue wait", t0 + 1 * MS, t0 + 3 * MS),
            ("inference", t0 + 3 * MS, t0 + 7 * MS),
            ("encode", t0 + 7 * MS, t0 + 8 * MS),
        ),
        "attributes": (("textclf.texts", 1),),
    }


@pytest.fixture
def tracers() -> Iterator[list[Tracer]]:
    """Tracers made by a test, shut down after it (a test may shut them down itself)."""
    made: list[Tracer] = []
    yield made
    for tracer in made:
        tracer.shutdown(1.0)


def start(tracers: list[Tracer], endpoint: str, **env: str) -> Tracer:
    config = tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env})
    assert config is not None
    tracer = Tracer(config.with_resource({"service.name": "svc-under-test"}), "9.9.9")
    tracers.append(tracer)
    tracer.start()
    return tracer


def ms(span: Span) -> float:
    return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6


async def test_a_request_becomes_a_server_span_of_the_callers_trace_with_one_child_per_phase(
    tracers: list[Tracer],
) -> None:
    async with OtlpReceiver() as receiver:
        tracer = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
        before = time.time_ns()
        tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
        server, *children = await receiver.wait_for_spans(5)
    assert receiver.posts[0].headers["Content-Type"] == "application/x-protobuf"
    resource = receiver.posts[0].request.resource_spans[0]
    assert attributes(resource.resource)["service.name"] == "svc-under-test"
    assert (resource.scope_spans[0].scope.name, resource.scope_spans[0].scope.version) == ("function", "9.9.9")

    assert (server.trace_id.hex(), server.parent_span_id.hex(), server.span_id.hex()) == (TRACE, CALLER, SPAN)
    assert (server.name, server.kind, server.status.code) == (
        "POST /prediction",
        Span.SPAN_KIND_SERVER,
        Status.STATUS_CODE_UNSET,
    )
    assert attributes(server) == {
        "http.request.method": "POST",
        "url.path": "/prediction",
        "http.route": "/prediction",
        "http.response.status_code": 200,
        "textclf.texts": 1,
    }
    assert server.flags == 0x301  # sampled, and its parent is remote
    assert abs(server.start_time_unix_nano - before) < 1e9  # Unix time, from the monotonic clock
    assert ms(server) == pytest.approx(9.0, abs=1e-3)

    lines = tree([server, *children]).splitlines()  # the waterfall a trace viewer draws
    assert lines[0] == f"POST /prediction  9.000 ms  span {SPAN} parent {CALLER}"
    assert [line.split("  span ")[0] for line in lines[1:]] == [
        "  read body  1.000 ms",
        "  queue wait  2.000 ms",
        "  inference  4.000 ms",
        "  encode  1.000 ms",
    ]
    assert {c.kind for c in children} == {Span.SPAN_KIND_INTERNAL}
    assert {c.trace_id.hex() for c in children} == {TRACE}
    assert {c.parent_span_id.hex() for c in children} == {SPAN}
    assert len({c.span_id for c in children} | {server.span_id}) == 5
    for child in children:
        assert server.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= server.end_time_unix_nano


async def test_a_request_without_a_caller_starts_a_trace_of_its_own(tracers: list[Tracer]) -> None:
    async with OtlpReceiver() as receiver:
        tracer = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
        tracer.record(**request(time.monotonic(), trace=None, span=None))  # type: ignore[arg-type]
        server, *children = await receiver.wait_for_spans(5)
    assert len(server.trace_id) == 16
    assert server.trace_id != bytes(16)
    assert len(server.span_id) == 8
    assert server.parent_span_id == b""
    assert server.flags == 0x101  # sampled, parent not remote
    assert {c.trace_id for c in children} == {server.trace_id}
    assert {c.parent_span_id for c in children} == {server.span_id}


async def test_a_5xx_is_an_error_a_4xx_is_not_and_unknown_methods_and_routes_follow_the_conventions(
    tracers: list[Tracer],
) -> None:
    t0 = time.monotonic()
    async with OtlpReceiver() as receiver:
        tracer = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
        tracer.record(TRACE, CALLER, SPAN, "POST", "/prediction", "/prediction", 503, t0, t0 + MS)
        tracer.record(TRACE, CALLER, SPAN, "POST", "/prediction", "/prediction", 405, t0, t0 + MS)
        tracer.record(None, None, None, "BREW", None, "/coffee", 404, t0, t0 + MS)
        failed, invalid, unknown = await receiver.wait_for_spans(3)
    assert failed.status.code == Status.STATUS_CODE_ERROR
    assert attributes(failed)["error.type"] == "503"
    assert invalid.status.code == Status.STATUS_CODE_UNSET
    assert "error.type" not in attributes(invalid)
    assert unknown.name == "HTTP"  # no route matched, a method the conventions do not name
    assert attributes(unknown) == {
        "http.request.method": "_OTHER",
        "http.request.method_original": "BREW",
        "url.path": "/coffee",
        "http.response.status_code": 404,
    }


async def test_headers_and_gzip_reach_the_collector_and_the_connection_is_kept_alive(tracers: list[Tracer]) -> None:
    async with OtlpReceiver() as receiver:
        tracer = start(
            tracers,
            receiver.url,
            OTEL_EXPORTER_OTLP_HEADERS="api-key=s%20ecret,x-tenant=blue",
            OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1",
            OTEL_BSP_SCHEDULE_DELAY="60000",
        )
        for _ in range(3):
            tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
            await receiver.wait_for_posts(len(receiver.posts) + 1)
    headers = receiver.posts[0].headers
    assert (headers["api-key"], headers["x-tenant"], headers["Content-Encoding"]) == ("s ecret", "blue", "gzip")
    assert receiver.posts[0].size < receiver.posts[0].request.ByteSize()  # compressed on the wire
    assert len(receiver.spans) == 15
    assert len({post.peer for post in receiver.posts}) == 1  # one connection


async def test_a_connection_the_collector_closed_while_idle_is_renewed_without_a_drop(tracers: list[Tracer]) -> None:
    async with OtlpReceiver(keepalive=0.1) as receiver:
        tracer = start(tracers, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="1", OTEL_BSP_SCHEDULE_DELAY="60000")
        for count in (1, 2):
            tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
            await receiver.wait_for_posts(count)
            await asyncio.sleep(0.5)  # the receiver closes the idle connection
    assert len({post.peer for post in receiver.posts}) == 2
    assert tracer.counts() == SpanCounts(exported=10, dropped_queue_full=0, dropped_export_failed=0)


async def test_a_full_batch_is_sent_at_once_and_a_partial_one_after_the_schedule_delay(tracers: list[Tracer]) -> None:
    async with OtlpReceiver() as receiver:
        eager = start(tracers, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4", OTEL_BSP_SCHEDULE_DELAY="60000")
        t0 = time.monotonic()
        for _ in range(4):
            eager.record(**request(t0))  # type: ignore[arg-type]
        await receiver.wait_for_posts(1, within=5.0)  # not 60 s: the batch was full
        assert len(receiver.spans) == 20
        patient = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="300")
        patient.record(**request(time.monotonic()))  # type: ignore[arg-type]
        waited = time.monotonic()
        await receiver.wait_for_posts(2, within=5.0)
        assert time.monotonic() - waited >= 0.2  # one record waits for the schedule (300 ms, woken by none)
    assert [len(post.request.resource_spans[0].scope_spans[0].spans) for post in receiver.posts] == [20, 5]


def offer(tracer: Tracer, traceparent: str, parent_id: str | None, route: str) -> None:
    """What the middleware does with a request answered with ``traceparent``: its spans recorded if kept."""
    if tracer.keeps(traceparent):
        t0 = time.monotonic()
        tracer.record(traceparent[3:35], parent_id, traceparent[36:52], "POST", route, route, 200, t0, t0 + MS)


def root(tracer: Tracer, trace: str) -> str:
    """The ``traceparent`` answering a request that started trace ``trace`` (as ``RequestIds`` writes it)."""
    return f"00-{trace}-{SPAN}-{'01' if tracer.samples_root(trace) else '00'}"


async def test_sampling_follows_the_callers_flag_and_the_ratio(tracers: list[Tracer]) -> None:
    low, high = "0" * 18 + "00000000000001", "0" * 18 + "ffffffffffffff"  # low 56 bits: tiny and all ones
    async with OtlpReceiver() as receiver:
        parent_based = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
        offer(parent_based, f"00-{TRACE}-{SPAN}-00", CALLER, "/prediction")
        offer(parent_based, f"00-{TRACE}-a1b2c3d400000002-01", CALLER, "/a")
        ratio = start(tracers, receiver.url, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5")
        for trace in (low, high):  # not parent based: the caller's "not sampled" is overruled by the ratio
            offer(ratio, f"00-{trace}-{SPAN}-00", CALLER, "/b")
        never = start(tracers, receiver.url, OTEL_TRACES_SAMPLER="parentbased_always_off")
        offer(never, root(never, TRACE), None, "/c")
        offer(never, f"00-{TRACE}-{SPAN}-01", CALLER, "/d")
        for tracer in tracers:
            await asyncio.to_thread(tracer.shutdown, 5.0)
    assert sorted(attributes(s)["http.route"] for s in receiver.spans) == ["/a", "/b", "/d"]
    assert [s.trace_id.hex() for s in receiver.spans if s.name == "POST /b"] == [low]


def test_whether_a_request_is_kept_is_known_from_its_answers_traceparent_before_it_runs() -> None:
    """``keeps``: decided as the request starts (a request sampled out takes no timings and is not recorded)."""
    low, high = "0" * 18 + "00000000000001", "0" * 18 + "ffffffffffffff"

    def tracer(**env: str) -> Tracer:
        config = tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **env})
        assert config is not None
        return Tracer(config)  # not started: nothing is exported

    parent_based = tracer()
    assert parent_based.keeps(f"00-{TRACE}-{SPAN}-01")
    assert parent_based.keeps(f"00-{TRACE}-{SPAN}-03")  # another flag beside sampled
    assert not parent_based.keeps(f"00-{TRACE}-{SPAN}-00")
    assert not parent_based.keeps(f"00-{TRACE}-{SPAN}-02")
    ratio = tracer(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5")
    assert ratio.keeps(f"00-{low}-{SPAN}-00")  # the caller's flag is overruled by the ratio
    assert not ratio.keeps(f"00-{high}-{SPAN}-01")
    assert not tracer(OTEL_TRACES_SAMPLER="always_off").keeps(f"00-{low}-{SPAN}-01")


def test_a_full_queue_drops_new_requests_and_counts_their_spans(tracers: list[Tracer]) -> None:
    queue = {"OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4"}
    config = tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", **queue})
    assert config is not None
    tracer = Tracer(config)  # not started: nothing leaves the queue
    tracers.append(tracer)
    for _ in range(10):
        tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
    assert tracer.queued == 4
    assert tracer.counts() == SpanCounts(exported=0, dropped_queue_full=6 * 5, dropped_export_failed=0)
    tracer.shutdown(1.0)  # what was queued is never sent: counted as failed
    tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
    assert tracer.counts() == SpanCounts(exported=0, dropped_queue_full=7 * 5, dropped_export_failed=4 * 5)


SMALL_QUEUE = {
    "OTEL_BSP_SCHEDULE_DELAY": "20",
    "OTEL_BSP_MAX_QUEUE_SIZE": "256",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
}


def assert_record_never_waits(tracer: Tracer, count: int) -> None:
    """Record ``count`` requests as fast as possible: none waits for the network (a hung POST waits 10 s),
    and on average each costs microseconds (a bound loose enough for a shared machine)."""
    slowest, t0 = 0.0, time.monotonic()
    for _ in range(count):
        started = time.perf_counter()
        tracer.record(**request(t0))  # type: ignore[arg-type]
        slowest = max(slowest, time.perf_counter() - started)
    average = (time.monotonic() - t0) / count
    assert slowest < 0.2, f"a record() call took {slowest * 1000:.1f} ms"
    assert average < 50e-6, f"record() took {average * 1e6:.1f} µs on average"


def test_a_dead_collector_costs_dropped_spans_only(tracers: list[Tracer]) -> None:
    tracer = start(tracers, f"http://127.0.0.1:{free_port()}", **SMALL_QUEUE)
    assert_record_never_waits(tracer, 3000)
    time.sleep(0.3)
    started = time.monotonic()
    tracer.shutdown(2.0)
    took = time.monotonic() - started
    counts = tracer.counts()
    assert counts.exported == 0
    assert counts.dropped_queue_full + counts.dropped_export_failed == 3000 * 5
    assert counts.dropped_export_failed > 0  # it was tried
    assert took < 1.0  # refused at once: nothing to wait for


def test_a_hung_collector_costs_dropped_spans_and_shutdown_keeps_its_bound(tracers: list[Tracer]) -> None:
    with hung_collector() as collector:
        port = collector.getsockname()[1]
        tracer = start(tracers, f"http://127.0.0.1:{port}", **SMALL_QUEUE)
        assert_record_never_waits(tracer, 3000)
        time.sleep(0.3)  # the first batch is posted, and waits for an answer (10 s, the default timeout)
        started = time.monotonic()
        tracer.shutdown(1.0)
        took = time.monotonic() - started
        assert 0.9 < took < 1.5
        counts = tracer.counts()
        assert counts.exported == 0
        assert counts.dropped_queue_full + counts.dropped_export_failed == 3000 * 5
        deadline = time.monotonic() + 2.0  # the abandoned POST was aborted: the thread ends and closes its socket
        while tracer.exporting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not tracer.exporting
        assert tracer.counts() == counts  # nothing counted twice


async def test_a_failing_collector_is_not_retried_before_the_next_schedule(tracers: list[Tracer]) -> None:
    async with OtlpReceiver(status=503) as receiver:
        tracer = start(tracers, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2", OTEL_BSP_SCHEDULE_DELAY="60000")
        for _ in range(2):
            tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
        await receiver.wait_for_posts(1)  # a full batch: posted at once, refused, dropped
        for _ in range(6):  # three more full batches, each waking the thread
            tracer.record(**request(time.monotonic()))  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        assert len(receiver.posts) == 1  # no new attempt within the schedule delay: no retry storm
        await asyncio.to_thread(tracer.shutdown, 5.0)  # one last attempt, refused too: the rest is dropped
    assert len(receiver.posts) == 2
    assert tracer.counts() == SpanCounts(exported=0, dropped_queue_full=0, dropped_export_failed=8 * 5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test's certificate)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_an_https_collector_is_trusted_through_the_certificate_variable(
    tracers: list[Tracer], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with OtlpReceiver(ssl_context=context) as receiver:
        untrusted = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="50")
        trusted = start(tracers, receiver.url, OTEL_BSP_SCHEDULE_DELAY="50", OTEL_EXPORTER_OTLP_CERTIFICATE=str(cert))
        untrusted.record(**request(time.monotonic()))  # type: ignore[arg-type]
        trusted.record(**request(time.monotonic()))  # type: ignore[arg-type]
        await receiver.wait_for_spans(5)
        for tracer in (untrusted, trusted):  # before the receiver closes: a TLS connection left open warns
            await asyncio.to_thread(tracer.shutdown, 5.0)
    assert trusted.counts().exported == 5
    assert untrusted.counts() == SpanCounts(exported=0, dropped_queue_full=0, dropped_export_failed=5)


def test_the_encoding_decodes_field_for_field_with_long_values_and_every_attribute_type() -> None:
    t0 = time.monotonic()
    path = "/p" * 10_000  # a length of three varint bytes
    extra = (("flag", True), ("off", False), ("count", 3), ("negative", -2), ("ratio", 0.25), ("name", "é ✓"))
    record = (TRACE, CALLER, SPAN, "GET", "/x", path, 200, t0, t0 + 1.0, (("only", t0, t0 + 0.5),), extra)
    encoder = Encoder((("service.name", "s"),))
    for i in range(5000):  # past the cache's limit: evicted encodings are made again, alike
        encoder.encode([(*record[:10], (("n", i),))], 0)
    message = ExportTraceServiceRequest()
    message.ParseFromString(encoder.encode([record] * 3, 1_000))
    spans = list(spans_of(message))
    assert len(spans) == 6
    server = spans[0]
    assert attributes(server) == {
        "http.request.method": "GET",
        "url.path": path,
        "http.route": "/x",
        "http.response.status_code": 200,
        **dict(extra),
    }
    assert server.start_time_unix_nano == int(t0 * 1e9) + 1_000
    assert ms(server) == pytest.approx(1000.0, abs=1e-3)


def test_the_phase_clock_is_the_middlewares_clock() -> None:
    """The middleware times requests with perf_counter, the batcher with monotonic: one clock on Linux."""
    perf, mono = time.get_clock_info("perf_counter"), time.get_clock_info("monotonic")
    assert perf.implementation == mono.implementation


def loaded_modules(code: str) -> list[str]:
    program = (
        "import os, sys, function.__main__\n"
        "from function.app import create_app\nfrom function.settings import Settings\n"
        "from function.tracing.config import tracing_config\n"
        f"{code}\n"
        "create_app(Settings())\n"
        "wanted = ('function.tracing', 'opentelemetry', 'google.protobuf')\n"
        "print(sorted(m for m in sys.modules if m.startswith(wanted)))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return list(ast.literal_eval(result.stdout.strip()))


def test_with_tracing_off_only_the_configuration_is_imported() -> None:
    off = "assert tracing_config(os.environ) is None"
    assert loaded_modules(off) == ["function.tracing", "function.tracing.config"]
    on = (
        "config = tracing_config({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "from function.tracing.tracer import Tracer\nTracer(config)"
    )
    assert loaded_modules(on) == [
        "function.tracing",
        "function.tracing.collector",
        "function.tracing.config",
        "function.tracing.otlp",
        "function.tracing.tracer",
    ]


async def test_a_root_is_sampled_as_its_answer_says(tracers: list[Tracer]) -> None:
    """``samples_root``: the sampled flag of a trace the service starts, the same decision ``keeps`` makes."""
    async with OtlpReceiver() as receiver:
        tracer = start(tracers, receiver.url, OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.5")
        traces = [f"{i:018x}{(i * 0x9E3779B97F4A7C15) % (1 << 56):014x}" for i in range(1, 41)]
        for trace in traces:
            offer(tracer, root(tracer, trace), None, "/x")
        await asyncio.to_thread(tracer.shutdown, 5.0)  # what is queued is sent; the receiver answers meanwhile
    kept = {span.trace_id.hex() for span in receiver.spans}
    assert kept == {trace for trace in traces if tracer.samples_root(trace)}
    assert 0 < len(kept) < len(traces)
