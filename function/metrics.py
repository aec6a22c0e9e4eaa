"""Every Prometheus metric of the service, in one registry per app.

Recorded in the server process only (workers send their timings back with each result), so
no multiprocess directory is needed. Label values come from fixed sets: route templates,
known methods, status codes the service emits, the model's labels and the error reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector

from function.collectors import DroppedLogLines, GcPauses, LoopHistogram
from function.drift import DRIFT_WINDOW, LabelWindow
from function.errors import FEEDBACK_REJECTIONS, REJECTION_REASONS, VALIDATION_REASONS
from function.heap import ActivityClock
from function.inference.classifier import Prediction

PREFIX = "textclf"
#: 0.25 ms to 10 s.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
TOKEN_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000)
UNKNOWN_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(
        self, labels: Sequence[str], routes: Iterable[str], reference_mix: Mapping[str, int] | None = None
    ) -> None:
        """``reference_mix``: label counts of the training split, for the label-drift gauge."""
        # NOTE: a process-wide switch (idempotent): the *_created series only double the scrape.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = r = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            f"{PREFIX}_http_requests_total", "HTTP requests answered", ["route", "method", "code"], registry=r
        )
        self.request_seconds = LoopHistogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from request to response, by route template",
            LATENCY_BUCKETS,
            ["route"],
            registry=r,
        )
        self.in_flight = Gauge(f"{PREFIX}_http_requests_in_flight", "Requests being handled now", registry=r)
        self.inference_seconds = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "Time inside onnxruntime per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = LoopHistogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time from a text's arrival until a worker starts on it",
            LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Texts per onnxruntime call", buckets=BATCH_BUCKETS, registry=r
        )
        self.predictions = Counter(f"{PREFIX}_predictions_total", "Predicted labels", ["label"], registry=r)
        self.validation_failures = Counter(
            f"{PREFIX}_validation_failures_total", "Requests refused as invalid, by reason", ["reason"], registry=r
        )
        self.rejections = Counter(
            f"{PREFIX}_rejected_requests_total",
            "Requests refused before validation (408, 413, 415, 499, 503), by reason",
            ["reason"],
            registry=r,
        )
        self.workers_configured = Gauge(f"{PREFIX}_pool_workers", "Inference workers configured", registry=r)
        self.workers_alive = Gauge(f"{PREFIX}_pool_workers_alive", "Inference workers alive and warm", registry=r)
        self.worker_restarts = Counter(
            f"{PREFIX}_pool_worker_restarts_total", "Inference workers replaced after dying", registry=r
        )
        self.body_bytes_held = Gauge(
            f"{PREFIX}_request_body_bytes", "Request-body bytes held now (being read or waiting)", registry=r
        )
        self.body_budget = Gauge(
            f"{PREFIX}_request_body_budget_bytes", "Request-body bytes that may be held at once", registry=r
        )
        self.batch_chars = Gauge(
            f"{PREFIX}_batch_max_chars", "Most characters in one onnxruntime call (BATCH_MAX_CHARS)", registry=r
        )
        self.connections_refused = Counter(
            f"{PREFIX}_connections_refused",
            "Connections closed at once because the open-file limit was near",
            registry=r,
        )
        self.model = Info(f"{PREFIX}_model", "The model being served", registry=r)
        self.feedback = Counter(
            f"{PREFIX}_feedback",
            "Labels fed back on predictions (POST /feedback), by the model version that predicted",
            ["model_version", "predicted", "actual"],
            registry=r,
        )
        self.feedback_rejected = Counter(
            f"{PREFIX}_feedback_rejected",
            "Feedback not counted, by reason",
            ["reason"],
            registry=r,
        )
        for reason in FEEDBACK_REJECTIONS:
            self.feedback_rejected.labels(reason)
        self.confidence = LoopHistogram(
            f"{PREFIX}_prediction_confidence",
            "Top probability of each prediction, by predicted label",
            CONFIDENCE_BUCKETS,
            ["label"],
            registry=r,
        )
        self.text_tokens = LoopHistogram(
            f"{PREFIX}_text_tokens", "Tokens per text predicted", TOKEN_BUCKETS, registry=r
        )
        self.unknown_share = LoopHistogram(
            f"{PREFIX}_text_unknown_token_ratio",
            "Share of a text's tokens that the model's vocabulary does not know (0 for a text without tokens)",
            UNKNOWN_BUCKETS,
            registry=r,
        )
        self.label_window = window = LabelWindow(labels, reference_mix)
        Gauge(
            f"{PREFIX}_label_drift_jensen_shannon",
            f"Jensen-Shannon divergence (bits) of the last {DRIFT_WINDOW} predicted labels' mix from the training mix",
            registry=r,
        ).set_function(window.divergence)
        Gauge(f"{PREFIX}_label_drift_window_texts", "Predictions in the label-drift window", registry=r).set_function(
            lambda: window.filled
        )
        r.register(DroppedLogLines(f"{PREFIX}_log_lines_dropped"))
        self.gc_pauses = GcPauses(
            Histogram(
                f"{PREFIX}_gc_pause_seconds",
                "Time the server process stood still in Python's garbage collector, by generation",
                ["generation"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            )
        )
        self._labels = {label: (self.predictions.labels(label), self.confidence.labels(label)) for label in labels}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.activity = ActivityClock()  # ticks once per request answered: the heap trimmer watches it
        for reason in VALIDATION_REASONS:
            self.validation_failures.labels(reason)
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason)
        for route in routes:
            self.request_seconds.labels(route)

    def observe_batch(self, seconds: float, waits: Sequence[float], predictions: Sequence[Prediction]) -> None:
        """Record one onnxruntime call: its size and duration, and each text's queue wait, label and health."""
        self.batch_size.observe(len(predictions))
        self.inference_seconds.observe(seconds)
        queue_wait = self.queue_wait_seconds.observe
        for wait in waits:
            queue_wait(max(wait, 0.0))
        tokens, unknown_share, window = self.text_tokens.observe, self.unknown_share.observe, self.label_window
        for prediction in predictions:
            children = self._labels.get(prediction.label)
            if children is not None:
                children[0].inc()
                children[1].observe(max(prediction.probabilities))
                window.add(prediction.label)
            tokens(prediction.tokens)
            unknown_share(prediction.unknown / prediction.tokens if prediction.tokens else 0.0)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:  # bounded: routes, methods and statuses come from fixed sets
            method_label = method if method in KNOWN_METHODS else "OTHER"
            children = self.requests.labels(route, method_label, str(status)), self.request_seconds.labels(route)
            if method_label == method:
                self._request_children[key] = children
        counter, histogram = children
        self.activity.tick()
        counter.inc()
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
