"""/metrics: Prometheus exposition whose counters move by exactly what the traffic did."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import subprocess
from collections import Counter

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from function.metrics import LATENCY_BUCKETS
from function.settings import Settings
from tests.helpers import ROOT

JSON = {"Content-Type": "application/json"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, metric: str, /, **labels: str) -> float:
    return value(after, metric, **labels) - value(before, metric, **labels)


@pytest.mark.parametrize("settings", [Settings(workers=1, max_body_bytes=2000, log_format="text")])
async def test_counters_move_by_exactly_the_traffic_sent(client: TestClient) -> None:
    before = await scrape(client)
    labels: Counter[str] = Counter()
    for text in ("the goalie and the puck", "orbit of the shuttle", "the pitcher threw"):
        answer = await client.post("/prediction", data=json.dumps({"text": text}), headers=JSON)
        labels[(await answer.json())["label"]] += 1
    batch = await client.post(
        "/predictions", data=json.dumps({"texts": ["pgp key", "voltage", "senate", "nhl"]}), headers=JSON
    )
    labels.update((await batch.json())["labels"])
    assert (await client.post("/prediction", data=b'{"text": " "}', headers=JSON)).status == 405
    assert (await client.post("/prediction", data=b"{oops", headers=JSON)).status == 405
    assert (
        await client.post("/prediction", data=b'{"text": "a"}', headers={"Content-Type": "text/plain"})
    ).status == 415
    assert (await client.post("/prediction", data=json.dumps({"text": "x" * 3000}), headers=JSON)).status == 413
    assert (await client.get("/no/such/path/12345")).status == 404
    after = await scrape(client)

    requests = "textclf_http_requests_total"
    assert delta(before, after, requests, route="/prediction", method="POST", code="200") == 3
    assert delta(before, after, requests, route="/predictions", method="POST", code="200") == 1
    assert delta(before, after, requests, route="/prediction", method="POST", code="405") == 2
    assert delta(before, after, requests, route="/prediction", method="POST", code="415") == 1
    assert delta(before, after, requests, route="/prediction", method="POST", code="413") == 1
    assert delta(before, after, requests, route="unmatched", method="GET", code="404") == 1
    assert delta(before, after, "textclf_http_request_duration_seconds_count", route="/prediction") == 7
    for label in ("baseball", "cryptography", "electronics", "hockey", "politics", "space"):
        assert delta(before, after, "textclf_predictions_total", label=label) == labels[label]
    assert delta(before, after, "textclf_validation_failures_total", reason="empty_text") == 1
    assert delta(before, after, "textclf_validation_failures_total", reason="invalid_json") == 1
    assert delta(before, after, "textclf_validation_failures_total", reason="wrong_type") == 0
    assert delta(before, after, "textclf_rejected_requests_total", reason="unsupported_media_type") == 1
    assert delta(before, after, "textclf_rejected_requests_total", reason="payload_too_large") == 1
    assert delta(before, after, "textclf_rejected_requests_total", reason="overloaded") == 0
    # three single texts and one batch of four: four onnxruntime calls, seven texts
    assert delta(before, after, "textclf_batch_size_count") == 4
    assert delta(before, after, "textclf_batch_size_sum") == 7
    assert delta(before, after, "textclf_inference_duration_seconds_count") == 4
    assert delta(before, after, "textclf_queue_wait_seconds_count") == 7
    assert value(after, "textclf_http_requests_in_flight") == 1  # the scrape itself


async def test_pool_and_model_identity(client: TestClient) -> None:
    samples = await scrape(client)
    info = json.loads((ROOT / "model/model.json").read_text())
    assert value(samples, "textclf_pool_workers") == 1
    assert value(samples, "textclf_pool_workers_alive") == 1
    assert value(samples, "textclf_pool_worker_restarts_total") == 0
    assert value(samples, "textclf_model_info", name=info["name"], version=info["version"], sha256=info["sha256"]) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert any(name == "python_info" for name, _ in samples)


async def test_label_values_stay_bounded_whatever_clients_send(client: TestClient) -> None:
    for i in range(20):
        await client.get(f"/random/{i}")
        await client.request("BREW", "/prediction")
    samples = await scrape(client)
    routes = {dict(labels).get("route") for name, labels in samples if name == "textclf_http_requests_total"}
    methods = {dict(labels).get("method") for name, labels in samples if name == "textclf_http_requests_total"}
    assert routes <= {"/prediction", "unmatched", "/metrics"}
    assert methods <= {"GET", "OTHER"}


async def test_histogram_buckets_span_a_quarter_millisecond_to_ten_seconds(client: TestClient) -> None:
    samples = await scrape(client)
    bounds = {
        float(dict(labels)["le"]) for name, labels in samples if name == "textclf_inference_duration_seconds_bucket"
    }
    assert min(bounds) == 0.00025
    assert max(b for b in bounds if b != float("inf")) == 10.0
    assert LATENCY_BUCKETS[0] == 0.00025


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
async def test_promtool_accepts_the_exposition(client: TestClient) -> None:
    await client.post("/prediction", data=b'{"text": "orbit"}', headers=JSON)
    text = await (await client.get("/metrics")).read()
    command = ["promtool", "check", "metrics"]
    result = await asyncio.to_thread(subprocess.run, command, input=text, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_readme_documents_every_metric_of_the_service(client: TestClient) -> None:
    readme = (ROOT / "README.md").read_text()
    families = {family.name for family in text_string_to_metric_families(await (await client.get("/metrics")).text())}
    ours = {name for name in families if name.startswith("textclf_")}
    assert len(ours) == 26
    for name in ours:
        documented = name if f"`{name}`" in readme else name + "_total"  # the parser drops _total
        assert f"| `{documented}` |" in readme, name


async def test_every_garbage_collection_is_timed_and_startup_objects_are_frozen(client: TestClient) -> None:
    assert gc.get_freeze_count() > 0  # what startup built is out of the collector's way
    before = await scrape(client)
    gc.collect()
    after = await scrape(client)
    assert delta(before, after, "textclf_gc_pause_seconds_count", generation="2") >= 1
    assert delta(before, after, "textclf_gc_pause_seconds_sum", generation="2") > 0
