"""The service's own view of a load step, from its Prometheus counters: batch sizes and timings."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from bench.servers import HOST

BATCH = "textclf_batch_size"
INFERENCE = "textclf_inference_duration_seconds"
QUEUE_WAIT = "textclf_queue_wait_seconds"
_WANTED = tuple(f"{name}_{part}" for name in (BATCH, INFERENCE, QUEUE_WAIT) for part in ("sum", "count"))


def scrape(port: int) -> dict[str, float]:
    """The unlabelled sums and counts of the batching histograms ({} if /metrics does not answer)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in _WANTED:
            values[name] = float(value)
    return values


@dataclass(frozen=True)
class Batching:
    batches: int
    mean_size: float
    inference_ms: float  # mean time inside onnxruntime per batch
    queue_wait_ms: float  # mean time from a text's arrival to the start of its batch


def batching(before: dict[str, float], after: dict[str, float]) -> Batching | None:
    """What happened between two scrapes; None if the counters are missing or nothing ran."""
    if not all(k in before and k in after for k in _WANTED):
        return None

    def delta(name: str) -> float:
        return after[name] - before[name]

    batches = delta(f"{BATCH}_count")
    if batches <= 0:
        return None
    waits = max(1.0, delta(f"{QUEUE_WAIT}_count"))
    return Batching(
        batches=int(batches),
        mean_size=delta(f"{BATCH}_sum") / batches,
        inference_ms=delta(f"{INFERENCE}_sum") / max(1.0, delta(f"{INFERENCE}_count")) * 1e3,
        queue_wait_ms=delta(f"{QUEUE_WAIT}_sum") / waits * 1e3,
    )
