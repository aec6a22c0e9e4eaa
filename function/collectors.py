"""The service's own Prometheus collectors: a lock-free histogram for the event loop, dropped log
lines, garbage-collection pauses, and spans exported and dropped."""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from function.logs import stderr_lines


class LoopHistogram(Collector):
    """A histogram observed from the event loop's thread only, so without a lock per observation.

    prometheus-client's ``Histogram`` takes a lock for the sum and one for the bucket on every
    ``observe`` (about 0.8 µs); the service observes four per text and one per request. Scrapes
    run on the event loop too, so a scrape never sees half an observation.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, list(labelnames)
        self._bounds = (*map(float, buckets), math.inf)
        self._edges = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._series: dict[tuple[str, ...], _Series] = {}
        if not labelnames:
            self._only = self.labels()
        registry.register(self)

    def labels(self, *values: str) -> _Series:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = _Series(self._bounds)
        return series

    def observe(self, value: float) -> None:
        """For a histogram without labels."""
        self._only.observe(value)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, series in self._series.items():
            cumulative = list(itertools.accumulate(series.counts))
            family.add_metric(list(values), list(zip(self._edges, cumulative, strict=True)), series.sum)
        yield family


class _Series:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class DroppedLogLines(Collector):
    """Log lines dropped because stderr was not being read (``function.logs.StderrLines``)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def collect(self) -> Iterator[CounterMetricFamily]:
        lines = stderr_lines()
        yield CounterMetricFamily(
            self._name,
            "Log lines dropped because stderr was not being read",
            value=0 if lines is None else lines.dropped,
        )


class TraceSpans(Collector):
    """Spans exported and dropped, read from the tracer at scrape time (registered with tracing on only).

    ``counts``: ``Tracer.counts``, (exported, dropped with the queue full, dropped as the export failed).
    """

    def __init__(self, prefix: str, counts: Callable[[], tuple[int, int, int]]) -> None:
        self._prefix = prefix
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        exported, queue_full, export_failed = self._counts()
        yield CounterMetricFamily(
            f"{self._prefix}_trace_spans_exported", "Spans the OTLP collector accepted", value=exported
        )
        dropped = CounterMetricFamily(
            f"{self._prefix}_trace_spans_dropped",
            "Spans dropped: the export queue was full, or the export failed (or timed out at shutdown)",
            labels=["reason"],
        )
        dropped.add_metric(["queue_full"], queue_full)
        dropped.add_metric(["export_failed"], export_failed)
        yield dropped


class GcPauses:
    """A ``gc.callbacks`` entry that times each collection: the event loop stands still meanwhile."""

    def __init__(self, histogram: Histogram) -> None:
        self._by_generation = [histogram.labels(str(generation)) for generation in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)
