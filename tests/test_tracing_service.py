"""The service's spans, end to end: ``python -m function`` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` naming a real
OTLP/HTTP receiver that decodes what it gets with opentelemetry-proto, checked against the answers' headers
and the JSON access log; a dead collector, tracing off, and bad ``OTEL_*`` values."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import HOST, ServerProcess, free_port
from function.cloudevents.event_types import CLASSIFY
from tests.helpers import ROOT
from tests.otlp_receiver import OtlpReceiver, attributes, tree

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
BATCH_TRACE = "0af7651916cd43dd8448eb211c80319c"
UNSAMPLED_TRACE = "5ce929d0e0e4736a4bf92f3577b34da6"
ABANDONED_TRACE = "c80319c0af7651916cd43dd8448eb211"
EVENT_TRACE = "e4736a4bf92f3577b34da6a3ce929d0e"
#: A CloudEvent in binary mode (POST /): its attributes as headers, its data as the JSON body.
EVENT = {"ce-specversion": "1.0", "ce-id": "post-1", "ce-source": "/tests", "ce-type": CLASSIFY}
PHASES = ["read body", "queue wait", "inference", "encode"]
#: The access line's duration runs from the same stamp as the server span, but ends once the answer is
#: written, after the span ended: the line is never shorter, and longer by the writing alone, well under
#: a millisecond on an idle box. The bound leaves room for a loaded 2-core machine (the export thread
#: holding the GIL for a switch interval, a descheduled process).
WRITE_SLACK_MS = 100.0
OFF = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}  # empty: unset (the spec)


def traceparent(trace: str, flags: str = "01") -> dict[str, str]:
    return {"traceparent": f"00-{trace}-{CALLER_SPAN}-{flags}"}


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def started(env: dict[str, str]) -> ServerProcess:
    """A ready server; polled in a thread so that this loop's receiver keeps answering meanwhile."""
    server = ServerProcess(env={**OFF, **env})
    await asyncio.to_thread(server.wait_ready)
    return server


async def post(http: ClientSession, server: ServerProcess, path: str, body: Any, headers: dict[str, str]) -> Any:
    async with http.post(server.url + path, json=body, headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        return answer.headers


async def spans_of_traces(receiver: OtlpReceiver, traces: set[str], count: int) -> list[Span]:
    """The spans of ``traces`` once ``count`` of them have arrived (health probes' spans are left out)."""
    async with asyncio.timeout(60):
        while True:
            mine = [span for span in receiver.spans if span.trace_id.hex() in traces]
            if len(mine) >= count:
                return mine
            await asyncio.sleep(0.05)


async def trace_metrics(http: ClientSession, server: ServerProcess) -> dict[tuple[str, str], float]:
    """``textclf_trace_*`` samples of /metrics, by name and ``reason``."""
    async with http.get(server.url + "/metrics") as answer:
        text = await answer.text()
    return {
        (sample.name, sample.labels.get("reason", "")): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("textclf_trace_")
        for sample in family.samples
    }


async def trace_metrics_once(
    http: ClientSession, server: ServerProcess, key: tuple[str, str], at_least: float
) -> dict[tuple[str, str], float]:
    """``trace_metrics`` once the sample ``key`` has reached ``at_least`` (polled: a scrape has no event)."""
    async with asyncio.timeout(60):
        while True:
            samples = await trace_metrics(http, server)
            if samples.get(key, 0.0) >= at_least:
                return samples
            await asyncio.sleep(0.1)


def log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def ms(span: Span) -> float:
    return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6


def hang_up(server: ServerProcess, trace: str) -> None:
    """Send the headers and the first byte of a body, then close: the client left (499)."""
    head = (
        f"POST /prediction HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 100\r\ntraceparent: 00-{trace}-{CALLER_SPAN}-01\r\n\r\n{{"
    )
    with socket.create_connection((HOST, server.port), timeout=10) as connection:
        connection.sendall(head.encode())


async def test_each_request_is_a_server_span_of_its_callers_trace_with_its_phases_as_children(
    http: ClientSession,
) -> None:
    async with OtlpReceiver() as receiver:
        server = await started(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100", "LOG_FORMAT": "json"}
        )
        try:
            unsampled = await post(
                http, server, "/prediction", {"text": "orbit"}, traceparent(UNSAMPLED_TRACE, flags="00")
            )
            one = await post(
                http, server, "/prediction", {"text": "the shuttle reached orbit"}, traceparent(CALLER_TRACE)
            )
            batch = await post(
                http, server, "/predictions", {"texts": ["orbit", "goalie", "pitcher"]}, traceparent(BATCH_TRACE)
            )
            rootless = await post(http, server, "/prediction", {"text": "a puck"}, {})
            event = await post(http, server, "/", {"text": "a puck"}, EVENT | traceparent(EVENT_TRACE))
            await asyncio.to_thread(hang_up, server, ABANDONED_TRACE)
            root_trace = rootless["traceparent"].split("-")[1]
            traces = {CALLER_TRACE, BATCH_TRACE, root_trace, EVENT_TRACE, ABANDONED_TRACE, UNSAMPLED_TRACE}
            spans = await spans_of_traces(receiver, traces, 4 * 5 + 2)
            # counted once the collector has answered (health probes' spans too: at least ours)
            counts = await trace_metrics_once(http, server, ("textclf_trace_spans_exported_total", ""), 22)
        finally:
            output = await asyncio.to_thread(server.stop)
    print(tree(spans))  # the waterfall, for whoever reads the test's output
    lines = log_lines(output)
    access = {line["trace_id"]: line for line in lines if line["logger"] == "function.access"}
    servers = {span.trace_id.hex(): span for span in spans if span.kind == Span.SPAN_KIND_SERVER}
    assert set(servers) == {CALLER_TRACE, BATCH_TRACE, root_trace, EVENT_TRACE, ABANDONED_TRACE}  # not the unsampled
    assert unsampled["traceparent"].endswith("-00")
    assert counts[("textclf_trace_spans_dropped_total", "queue_full")] == 0
    assert counts[("textclf_trace_spans_dropped_total", "export_failed")] == 0
    assert any(line["message"] == f"traces: each request's spans go to {receiver.url}/v1/traces" for line in lines)
    model = json.loads((ROOT / "model" / "model.json").read_text())
    assert attributes(receiver.posts[0].request.resource_spans[0].resource) == {
        "service.name": "newsgroups-classifier",
        "service.version": model["version"],
        "textclf.model.name": model["name"],
        "telemetry.sdk.name": "function.tracing",
        "telemetry.sdk.language": "python",
    }

    for trace, answer, route, texts in (
        (CALLER_TRACE, one, "/prediction", 1),
        (BATCH_TRACE, batch, "/predictions", 3),
        (root_trace, rootless, "/prediction", 1),
        (EVENT_TRACE, event, "/", 1),
    ):
        server_span = servers[trace]
        _, answer_trace, answer_span, _ = answer["traceparent"].split("-")
        assert (server_span.trace_id.hex(), server_span.span_id.hex()) == (answer_trace, answer_span)
        assert server_span.parent_span_id.hex() == ("" if trace == root_trace else CALLER_SPAN)
        assert server_span.name == f"POST {route}"
        assert attributes(server_span) == {
            "http.request.method": "POST",
            "http.route": route,
            "url.path": route,
            "http.response.status_code": 200,
            "textclf.texts": texts,
        }
        assert answer["X-Request-ID"] == f"{answer_trace}-{answer_span}"
        line = access[trace]
        assert (line["status"], line["path"], line["request_id"]) == (200, route, answer["X-Request-ID"])
        assert 0 <= line["duration_ms"] - ms(server_span) <= WRITE_SLACK_MS, (line["duration_ms"], ms(server_span))

        children = sorted(
            (s for s in spans if s.parent_span_id == server_span.span_id), key=lambda s: s.start_time_unix_nano
        )
        assert [c.name for c in children] == PHASES
        assert {(c.trace_id.hex(), c.kind) for c in children} == {(trace, Span.SPAN_KIND_INTERNAL)}
        edges = [server_span.start_time_unix_nano]
        for child in children:  # in order, each within the server span and after the one before
            assert edges[-1] <= child.start_time_unix_nano <= child.end_time_unix_nano
            edges.append(child.end_time_unix_nano)
        assert edges[-1] <= server_span.end_time_unix_nano
        assert sum(ms(c) for c in children) <= ms(server_span)

    left = servers[ABANDONED_TRACE]
    assert attributes(left)["http.response.status_code"] == 499
    assert left.parent_span_id.hex() == CALLER_SPAN
    assert access[ABANDONED_TRACE]["status"] == 499
    [reading] = [s for s in spans if s.parent_span_id == left.span_id]
    assert reading.name == "read body"  # it never got further
    assert left.start_time_unix_nano <= reading.start_time_unix_nano <= reading.end_time_unix_nano
    assert reading.end_time_unix_nano <= left.end_time_unix_nano


async def test_a_dead_collector_costs_nothing_but_dropped_spans(http: ClientSession) -> None:
    nobody = f"http://{HOST}:{free_port()}"  # a port nobody listens on: every export is refused
    server = await started({"OTEL_EXPORTER_OTLP_ENDPOINT": nobody, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        for number in range(20):
            await post(http, server, "/prediction", {"text": f"orbit {number}"}, traceparent(CALLER_TRACE))
        # every request's 5 spans, once the attempts after them have failed
        counts = await trace_metrics_once(http, server, ("textclf_trace_spans_dropped_total", "export_failed"), 100)
    finally:
        output = server.stop()
    assert counts[("textclf_trace_spans_exported_total", "")] == 0
    assert counts[("textclf_trace_spans_dropped_total", "queue_full")] == 0
    assert f"span export to {nobody}/v1/traces failed" in output


@pytest.mark.parametrize(
    "env",
    [
        {},  # unset: tracing is off by default
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_TRACES_EXPORTER": "none"},
    ],
)
async def test_tracing_off_exports_nothing_and_adds_nothing(http: ClientSession, env: dict[str, str]) -> None:
    async with OtlpReceiver() as receiver:
        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url} if env else {}
        server = await started({**endpoint, **env, "OTEL_BSP_SCHEDULE_DELAY": "1"})
        try:
            answer = await post(http, server, "/prediction", {"text": "orbit"}, {})
            traced = await post(http, server, "/prediction", {"text": "orbit"}, traceparent(CALLER_TRACE))
            metrics = await trace_metrics(http, server)
        finally:
            output = await asyncio.to_thread(server.stop)
    assert "traceparent" not in answer  # no trace is started
    assert traced["traceparent"].split("-")[1] == CALLER_TRACE  # the caller's is still continued
    assert metrics == {}
    assert receiver.posts == []
    assert "traces:" not in output


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
    ],
)
def test_a_bad_otel_value_stops_the_start_with_one_line_naming_it(env: dict[str, str], variable: str) -> None:
    full = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "HOST": HOST, "PORT": str(free_port())} | env
    result = subprocess.run(
        [sys.executable, "-m", "function"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"python -m function: {variable}=")
