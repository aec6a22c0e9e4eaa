"""``python -m bench.autoscale``: Knative's autoscaler (KPA) simulated on the measured per-pod curve.

A discrete-time model of one revision: the KPA's stable and panic windows, its scale rates and
bounds, the activator's buffer and the queue-proxy's, and pods that serve at the throughput and
latency ``bench/curve.json`` measured for the requests each holds, capped by what their
queue-proxy's CPU passes (``QUEUE_PROXY_CPU_MS_PER_REQUEST``). It plays a ramp from 0 to
20,000 req/s and a 10x burst against today's ``knative/service.yaml`` and against values a small
search finds, and writes ``bench/AUTOSCALE.md`` and ``bench/autoscale.png``. Every Knative default
and the page that documents it are in ``ASSUMPTIONS``; the report prints them.

The core (``PodCurve``, ``Kpa``, ``Platform``, ``Scenario``, ``simulate``, ``search``) is pure:
no files, no clock, no randomness.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from function.settings import Settings

# ---- Knative's documented defaults, and where they are written down ---------------------------

KPA_DOCS = "https://knative.dev/docs/serving/autoscaling/kpa-specific/"
CONCURRENCY_DOCS = "https://knative.dev/docs/serving/autoscaling/concurrency/"
BOUNDS_DOCS = "https://knative.dev/docs/serving/autoscaling/scale-bounds/"
ZERO_DOCS = "https://knative.dev/docs/serving/autoscaling/scale-to-zero/"
BURST_DOCS = "https://knative.dev/docs/serving/load-balancing/target-burst-capacity/"
SERVING = "https://github.com/knative/serving/blob/main/"

# ---- the queue-proxy: the figure the model takes, and where it comes from ----------------------

#: CPU the queue-proxy (Knative's sidecar in every pod, which every request crosses) spends per
#: request, in milliseconds. A production report: "for 1000 rps, queue_proxy will consume 500m CPU"
#: (knative/serving#7210, 2021-08-05), so 0.5 ms a request. Not measured here: there is no cluster
#: and no queue-proxy binary on the benchmark machine. For scale: the service itself spends about
#: 0.25 ms of CPU a request (2 CPUs / 7,912 req/s at the curve's peak, bench/curve.json), so the
#: sidecar would cost twice the model; Red Hat documents up to 1 vCPU per 2,500 req/s (0.4 ms) for
#: each of Knative's data-plane components, "depending on the payload size".
QUEUE_PROXY_CPU_MS_PER_REQUEST = 0.5
QUEUE_PROXY_SOURCES = (
    "https://github.com/knative/serving/issues/7210",
    "https://docs.openshift.com/serverless/1.34/knative-serving/scalability-and-performance-serving.html",
)
#: The queue-proxy's CPU request when a revision sets none: `queue-sidecar-cpu-request` in
#: config-deployment ("If omitted, a default value (currently "25m"), is used"), with no limit
#: unless the cluster turns `queueproxy.resource-defaults` on. 25m is all it is sure of on a node
#: whose CPU is fully requested.
QUEUE_PROXY_DEFAULT_CPU = 0.025
QUEUE_PROXY_DEFAULTS_DOCS = SERVING + "config/core/configmaps/deployment.yaml"
QUEUE_SIDECAR = "queue.sidecar.serving.knative.dev/"

#: (what, Knative's default, what the model does, source). Printed in the report.
ASSUMPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("stable window (`window`)", "60s", "mean of the 1 s concurrency samples over the last 60 s", KPA_DOCS),
    (
        "panic window (`panic-window-percentage`)",
        "10% of the stable window (6 s)",
        "mean over the last stable x percentage seconds",
        KPA_DOCS,
    ),
    (
        "panic threshold (`panic-threshold-percentage`)",
        "200%",
        "panic while ceil(panic concurrency / target) >= 2 x ready pods; while panicking the count never falls, "
        "and panic ends one stable window after the last tick over the threshold",
        KPA_DOCS + " and " + SERVING + "pkg/autoscaler/scaling/autoscaler.go",
    ),
    (
        "soft target (`target`)",
        "100 (`container-concurrency-target-default`)",
        "the KPA aims at min(target, containerConcurrency) x utilization in flight per pod",
        CONCURRENCY_DOCS + " and " + SERVING + "pkg/reconciler/autoscaling/resources/target.go",
    ),
    ("target utilization (`target-utilization-percentage`)", "70%", "as above", CONCURRENCY_DOCS),
    (
        "hard limit (`containerConcurrency`)",
        "0 (no limit)",
        "a pod serves at most this many requests at once; the rest wait in the queue-proxy or the activator",
        CONCURRENCY_DOCS,
    ),
    (
        "scale-up rate (`max-scale-up-rate`, cluster-wide)",
        "1000",
        "desired pods <= ceil(1000 x max(1, ready pods)) per decision",
        KPA_DOCS,
    ),
    (
        "scale-down rate (`max-scale-down-rate`, cluster-wide)",
        "2",
        "desired pods >= floor(ready pods / 2) per decision",
        KPA_DOCS,
    ),
    (
        "decision interval (`tick-interval`) and metric samples",
        "2 s; metrics scraped every 1 s",
        "one decision every 2 s on 1 s samples of the requests in the revision (in pods, queue-proxies and "
        "the activator)",
        SERVING + "pkg/autoscaler/metrics/collector.go",
    ),
    (
        "target burst capacity (`target-burst-capacity`)",
        "200",
        "the activator is in the path while ready pods x min(target, containerConcurrency) - 200 - panic "
        "concurrency < 0 (always at -1, only at zero pods at 0), re-decided every 2 s",
        BURST_DOCS + " and " + SERVING + "pkg/autoscaler/scaling/autoscaler.go",
    ),
    (
        "activator buffer",
        "10,000 requests per revision (`breakerQueueDepth`)",
        "in the path, the activator fills each ready pod to containerConcurrency and holds up to 10,000 more; "
        "beyond that it answers 503 (one activator's buffer: the conservative case)",
        SERVING + "pkg/activator/net/throttler.go",
    ),
    (
        "queue-proxy buffer",
        "10 x containerConcurrency per pod",
        "out of the path, each pod's queue-proxy holds up to 10 x containerConcurrency waiting requests; "
        "beyond that 503",
        SERVING + "pkg/queue/sharedmain/main.go",
    ),
    (
        "scale bounds (`min-scale`, `max-scale`, `initial-scale`)",
        "0 with scale to zero on / 0 (no limit) / 1",
        "the revision starts with max(initial, min) ready pods; every decision is clamped to [min, max]",
        BOUNDS_DOCS,
    ),
    (
        "scale-down delay (`scale-down-delay`)",
        "0s",
        "each decision is the largest of the decisions over the last delay",
        BOUNDS_DOCS + " and " + SERVING + "pkg/autoscaler/scaling/autoscaler.go",
    ),
    (
        "queue-proxy CPU (`queue.sidecar.serving.knative.dev/cpu-resource-request`)",
        "25m requested, no limit (`queue-sidecar-cpu-request` in config-deployment)",
        f"the sidecar spends {QUEUE_PROXY_CPU_MS_PER_REQUEST:g} ms of CPU a request (knative/serving#7210; not "
        "measured here), so a pod passes at most 1000 x its CPUs / that many req/s; it is sure of its request only",
        QUEUE_PROXY_DEFAULTS_DOCS,
    ),
    (
        "scale to zero (`scale-to-zero-grace-period`)",
        "30s (an upper bound)",
        "with min-scale 0, the last pod goes once the decision has been 0 (a whole stable window without "
        "requests) for the full 30 s; a cluster may remove it sooner",
        ZERO_DOCS,
    ),
)

# ---- the per-pod curve ------------------------------------------------------------------------


def isotonic(values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """The closest non-decreasing sequence (pool adjacent violators): noise in a measured curve
    averaged out instead of believed, so throughput never falls as concurrency grows."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(values, weights or [1.0] * len(values), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean2, weight2, count2 = blocks.pop()
            mean1, weight1, count1 = blocks.pop()
            total = weight1 + weight2
            blocks.append([(mean1 * weight1 + mean2 * weight2) / total, total, count1 + count2])
    return [mean for mean, _, count in blocks for _ in range(int(count))]


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    i = bisect.bisect_left(xs, x)
    if i == 0:
        return ys[0]
    if i == len(xs):
        return ys[-1]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class PodCurve:
    """Throughput and latency of one pod against the requests in it (closed-loop measurements).

    Throughput and latencies are made non-decreasing (``isotonic``). Between points they are
    interpolated linearly, throughput from 0 at no request. Past the last point throughput stays
    at its last value and latency grows in proportion to the requests (Little's law: the pod is
    saturated, each extra request only waits).
    """

    concurrency: tuple[float, ...]
    rps: tuple[float, ...]
    p50_ms: tuple[float, ...]
    p99_ms: tuple[float, ...]

    @classmethod
    def from_points(cls, points: Iterable[Mapping[str, Any]]) -> PodCurve:
        ordered = sorted(points, key=lambda p: float(p["concurrency"]))
        if not ordered:
            raise ValueError("a curve needs at least one point")
        return cls(
            concurrency=tuple(float(p["concurrency"]) for p in ordered),
            rps=tuple(isotonic([float(p["rps"]) for p in ordered])),
            p50_ms=tuple(isotonic([float(p["p50_ms"]) for p in ordered])),
            p99_ms=tuple(isotonic([float(p["p99_ms"]) for p in ordered])),
        )

    @property
    def peak_rps(self) -> float:
        return self.rps[-1]

    def throughput(self, concurrency: float) -> float:
        """Requests per second a pod completes with ``concurrency`` requests in it."""
        if concurrency <= 0:
            return 0.0
        if concurrency < self.concurrency[0]:
            return self.rps[0] * concurrency / self.concurrency[0]
        return _interpolate(self.concurrency, self.rps, concurrency)

    def _latency(self, ys: Sequence[float], concurrency: float) -> float:
        last = self.concurrency[-1]
        if concurrency > last:
            return ys[-1] * concurrency / last
        return _interpolate(self.concurrency, ys, max(concurrency, self.concurrency[0]))

    def p99(self, concurrency: float) -> float:
        """p99 latency (ms) with ``concurrency`` requests in the pod."""
        return self._latency(self.p99_ms, concurrency)

    def p50(self, concurrency: float) -> float:
        return self._latency(self.p50_ms, concurrency)

    def with_sidecar(self, cpu: float, cpu_ms_per_request: float) -> PodCurve:
        """The pod's curve once every request also crosses a queue-proxy with ``cpu`` CPUs that
        spends ``cpu_ms_per_request`` of CPU time on each.

        The sidecar completes at most ``cap = 1000 x cpu / cpu_ms_per_request`` requests a second,
        so throughput is capped there (a point is added where the service's own curve crosses the
        cap). Past the cap the requests beyond what the service needs wait for the sidecar: by
        Little's law their latency grows in proportion to the throughput lost, so latencies are
        multiplied by (service's throughput / capped throughput). Every request also pays the
        sidecar's own time, ``cpu_ms_per_request``, once. ``cpu_ms_per_request`` 0: the curve as
        it is (no sidecar modelled).
        """
        if cpu_ms_per_request <= 0:
            return self
        cap = 1000.0 * cpu / cpu_ms_per_request
        points = list(zip(self.concurrency, self.rps, self.p50_ms, self.p99_ms, strict=True))
        if cap < self.peak_rps:
            knee = self.concurrency_for(cap)
            if knee not in self.concurrency:
                points.append((knee, cap, self.p50(knee), self.p99(knee)))
                points.sort()
        capped = [
            (c, min(r, cap), p50 * r / min(r, cap) + cpu_ms_per_request, p99 * r / min(r, cap) + cpu_ms_per_request)
            for c, r, p50, p99 in points
        ]
        return PodCurve(*(tuple(column) for column in zip(*capped, strict=True)))

    def concurrency_for(self, rate: float) -> float:
        """The fewest requests in a pod at which it completes ``rate`` per second (<= peak)."""
        if rate <= 0:
            return 0.0
        if rate >= self.peak_rps:
            return self.concurrency[self.rps.index(self.peak_rps)]
        xs = (0.0, *self.concurrency)
        ys = (0.0, *self.rps)
        i = bisect.bisect_left(ys, rate)
        while i > 1 and ys[i - 1] == rate:
            i -= 1
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return x0 + (x1 - x0) * (rate - y0) / (y1 - y0) if y1 > y0 else x0


# ---- what is configured -----------------------------------------------------------------------


@dataclass(frozen=True)
class Kpa:
    """A revision's autoscaling settings; the defaults are Knative's (see ``ASSUMPTIONS``)."""

    target: float = 100.0
    utilization_pct: float = 70.0
    container_concurrency: int = 0
    stable_window_s: float = 60.0
    panic_window_pct: float = 10.0
    panic_threshold_pct: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    target_burst_capacity: float = 200.0
    min_scale: int = 0
    max_scale: int = 0  # 0: no limit
    initial_scale: int = 1
    scale_to_zero_grace_s: float = 30.0
    scale_down_delay_s: float = 0.0
    #: CPUs the queue-proxy is sure of (its request, `queue.sidecar.serving.knative.dev/cpu-resource-request`).
    sidecar_cpu: float = QUEUE_PROXY_DEFAULT_CPU

    @property
    def total(self) -> float:
        """The per-pod concurrency the KPA takes as 100%: the soft target, capped by the hard limit."""
        cc = self.container_concurrency
        return min(self.target, cc) if cc > 0 else self.target

    @property
    def target_value(self) -> float:
        """Requests per pod the KPA sizes the revision for."""
        return max(0.01, self.total * self.utilization_pct / 100)

    @property
    def panic_window_s(self) -> float:
        return self.stable_window_s * self.panic_window_pct / 100


@dataclass(frozen=True)
class Platform:
    """What is not a revision setting: the cluster's machinery and the pods' start-up."""

    #: Seconds from the decision to add a pod until it takes requests. The service itself is ready
    #: 0.3-0.6 s after its process starts (bench/RESULTS.md; about 1.5 s from the container's start
    #: in `make container-test`); the rest is assumed: about 1 s to schedule onto a node with room,
    #: 1.5 s to create the container from an image already on the node, and 1 s for readiness to
    #: reach the endpoints and the activator. An image pull (121 MB compressed) adds several seconds;
    #: a new node, minutes (out of this model).
    startup_s: float = 5.0
    #: CPUs of the service's container: what bench/curve.json was measured with (WORKERS=2 on 2 CPUs),
    #: the container's requests in knative/service.yaml. A pod costs these plus the sidecar's.
    app_cpu: float = 2.0
    #: The queue-proxy's CPU per request (``QUEUE_PROXY_CPU_MS_PER_REQUEST``); 0 leaves it out.
    sidecar_cpu_ms_per_request: float = QUEUE_PROXY_CPU_MS_PER_REQUEST
    tick_s: float = 2.0
    sample_s: float = 1.0
    activator_buffer: int = 10_000
    queue_proxy_depth: int = 10  # x containerConcurrency
    #: With containerConcurrency 0 nothing queues outside the pod: the service's own MAX_PENDING
    #: sheds beyond it (one text a request).
    pod_pending_limit: int = Settings.max_pending
    step_s: float = 0.5


@dataclass(frozen=True)
class Scenario:
    """Offered load (req/s, open loop) as straight lines between (seconds, rate) knots; two knots
    at the same second make a step."""

    name: str
    knots: tuple[tuple[float, float], ...]

    @property
    def duration_s(self) -> float:
        return self.knots[-1][0]

    def rate(self, t: float) -> float:
        times = [k[0] for k in self.knots]
        i = bisect.bisect_right(times, t)
        if i == 0:
            return self.knots[0][1]
        if i == len(self.knots):
            return self.knots[-1][1]
        (t0, r0), (t1, r1) = self.knots[i - 1], self.knots[i]
        return r0 if t1 == t0 else r0 + (r1 - r0) * (t - t0) / (t1 - t0)


RAMP = Scenario("ramp 0 to 20,000 req/s over 10 min, then 3 min held", ((0, 0), (600, 20_000), (780, 20_000)))
BURST = Scenario(
    "10x burst: 2,000 req/s, 20,000 for 60 s, back to 2,000",
    ((0, 2_000), (120, 2_000), (120, 20_000), (180, 20_000), (180, 2_000), (420, 2_000)),
)
SCENARIOS = (RAMP, BURST)

# ---- the simulation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    """One value per step: time (s), offered load, pods ready and started, p99 (ms; 0 without
    requests), 503s in the step, requests in the revision, activator in the path, panicking."""

    t: tuple[float, ...]
    offered: tuple[float, ...]
    ready: tuple[int, ...]
    pods: tuple[int, ...]
    p99_ms: tuple[float, ...]
    rejected: tuple[float, ...]
    concurrency: tuple[float, ...]
    activator: tuple[bool, ...]
    panic: tuple[bool, ...]
    step_s: float


@dataclass(frozen=True)
class Summary:
    rejected: float  # 503s
    peak_rejected_per_s: float
    worst_p99_ms: float
    seconds_over_p99: float  # seconds with p99 above the objective's limit
    pod_seconds: float  # pods started or ready, integrated over time
    max_pods: int
    p99_limit_ms: float
    cpu_seconds: float  # pod-seconds x the CPUs a pod requests (service and queue-proxy): the cost


P99_LIMIT_MS = 50.0


def pod_cpu(kpa: Kpa, platform: Platform) -> float:
    """CPUs one pod requests: the service's container and, when modelled, the queue-proxy's."""
    return platform.app_cpu + (kpa.sidecar_cpu if platform.sidecar_cpu_ms_per_request > 0 else 0.0)


def summarize(trace: Trace, p99_limit_ms: float = P99_LIMIT_MS, cpus_per_pod: float = 1.0) -> Summary:
    dt = trace.step_s
    pod_seconds = sum(trace.pods) * dt
    return Summary(
        rejected=round(sum(trace.rejected)),
        peak_rejected_per_s=max((r / dt for r in trace.rejected), default=0.0),
        worst_p99_ms=max(trace.p99_ms, default=0.0),
        seconds_over_p99=sum(dt for p in trace.p99_ms if p > p99_limit_ms),
        pod_seconds=pod_seconds,
        max_pods=max(trace.pods, default=0),
        p99_limit_ms=p99_limit_ms,
        cpu_seconds=pod_seconds * cpus_per_pod,
    )


@dataclass
class _Autoscaler:
    """The KPA's decision state (pkg/autoscaler/scaling/autoscaler.go), advanced by ``decide``."""

    kpa: Kpa
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (time, mean requests)
    panic_since: float | None = None
    max_panic_pods: int = 0
    zero_since: float | None = None
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # decisions within scale-down-delay

    def record(self, t: float, value: float) -> None:
        self.samples.append((t, value))
        while self.samples and self.samples[0][0] <= t - self.kpa.stable_window_s:
            self.samples.popleft()

    def _mean(self, t: float, window: float) -> float:
        values = [v for s, v in self.samples if s > t - window]
        return sum(values) / len(values) if values else 0.0

    def panic_value(self, t: float) -> float:
        return self._mean(t, self.kpa.panic_window_s)

    def decide(self, t: float, ready: int) -> int:
        """The pod count to ask for at time ``t``, with ``ready`` pods taking requests."""
        k = self.kpa
        stable, panic = self._mean(t, k.stable_window_s), self.panic_value(t)
        ready_count = max(1, ready)
        up = math.ceil(k.max_scale_up_rate * ready_count)
        down = math.floor(ready_count / k.max_scale_down_rate)
        stable_pods = math.ceil(stable / k.target_value)
        panic_pods = math.ceil(panic / k.target_value)
        desired = min(max(stable_pods, down), up)
        desired_panic = min(max(panic_pods, down), up)
        over = panic_pods / ready_count >= k.panic_threshold_pct / 100
        if over:
            self.panic_since = t
        elif self.panic_since is not None and self.panic_since + k.stable_window_s < t:
            self.panic_since, self.max_panic_pods = None, 0
        if self.panic_since is not None:
            self.max_panic_pods = max(self.max_panic_pods, desired, desired_panic)
            desired = self.max_panic_pods
        if k.scale_down_delay_s > 0:
            self.recent.append((t, desired))
            while self.recent[0][0] <= t - k.scale_down_delay_s:
                self.recent.popleft()
            desired = max(d for _, d in self.recent)
        return self._bounded(t, desired)

    def _bounded(self, t: float, desired: int) -> int:
        k = self.kpa
        if desired == 0 and k.min_scale == 0:
            self.zero_since = t if self.zero_since is None else self.zero_since
            if t - self.zero_since < k.scale_to_zero_grace_s:
                desired = 1
        else:
            self.zero_since = None
        desired = max(desired, k.min_scale)
        return min(desired, k.max_scale) if k.max_scale > 0 else desired


def activator_in_path(kpa: Kpa, ready: int, panic_value: float) -> bool:
    """Whether requests go through the activator (its buffer) rather than straight to the pods."""
    if ready == 0 or kpa.target_burst_capacity < 0:
        return True
    if kpa.target_burst_capacity == 0:
        return False
    return math.floor(ready * kpa.total - kpa.target_burst_capacity - panic_value) < 0


@dataclass(frozen=True)
class _Served:
    queued: float  # requests left waiting
    rejected: float
    in_pods: float  # requests being served, all pods
    p99_ms: float


def serve_step(
    curve: PodCurve, kpa: Kpa, platform: Platform, ready: int, queued: float, arrivals: float, via_activator: bool
) -> _Served:
    """One step of the fluid model: what the ready pods complete, what waits, what is refused.

    Latencies are in milliseconds and steps last hundreds, so within a step the pods are at the
    steady state for the work offered: the requests in a pod are the fewest at which it completes
    its share, up to containerConcurrency; the rest wait (first come, first served) in the
    activator or the queue-proxies, up to their buffers.
    """
    dt = platform.step_s
    cc = kpa.container_concurrency
    if ready == 0:
        kept = min(queued + arrivals, platform.activator_buffer)
        return _Served(kept, queued + arrivals - kept, 0.0, math.inf if kept > 0 else 0.0)
    slots = cc if cc > 0 else math.inf
    per_pod_peak = curve.throughput(slots) if cc > 0 else curve.peak_rps
    demand = queued + arrivals
    if demand <= ready * per_pod_peak * dt:
        per_pod = (
            curve.concurrency_for(demand / dt / ready)
            if cc == 0
            else min(cc, curve.concurrency_for(demand / dt / ready))
        )
        return _Served(0.0, 0.0, per_pod * ready, curve.p99(per_pod) if arrivals > 0 else 0.0)
    left = demand - ready * per_pod_peak * dt
    if cc == 0:  # no queue outside the pods: they hold everything, the service sheds past MAX_PENDING
        busy = curve.concurrency_for(curve.peak_rps)
        room = ready * max(0.0, platform.pod_pending_limit - busy)
        kept = min(left, room)
        in_pod = busy + kept / ready
        return _Served(kept, left - kept, in_pod * ready, curve.p99(in_pod))
    room = platform.activator_buffer if via_activator else ready * platform.queue_proxy_depth * cc
    kept = min(left, room)
    wait_ms = 1000 * kept / (ready * per_pod_peak)
    return _Served(kept, left - kept, cc * ready, curve.p99(cc) + wait_ms)


def simulate(curve: PodCurve, kpa: Kpa, platform: Platform, scenario: Scenario) -> Trace:
    """Play ``scenario`` against a revision configured by ``kpa``; every step recorded. The pods
    serve on ``curve`` as their queue-proxy (``kpa.sidecar_cpu``) lets them (``PodCurve.with_sidecar``)."""
    curve = curve.with_sidecar(kpa.sidecar_cpu, platform.sidecar_cpu_ms_per_request)
    dt = platform.step_s
    steps = round(scenario.duration_s / dt)
    per_sample = max(1, round(platform.sample_s / dt))
    per_tick = max(1, round(platform.tick_s / dt))
    scaler = _Autoscaler(kpa)
    ready = max(kpa.initial_scale, kpa.min_scale)
    starting: list[float] = []  # when each starting pod becomes ready
    queued, in_path, sample_sum = 0.0, True, 0.0
    rows: list[tuple[float, float, int, int, float, float, float, bool, bool]] = []
    for step in range(steps):
        t = step * dt
        arrived = [s for s in starting if s <= t]
        if arrived:
            ready += len(arrived)
            starting = [s for s in starting if s > t]
        in_path = in_path or ready == 0
        rate = scenario.rate(t + dt / 2)
        served = serve_step(curve, kpa, platform, ready, queued, rate * dt, in_path)
        queued = served.queued
        if ready == 0 and queued > 0 and starting:
            p99 = 1000 * (min(starting) - t) + curve.p99(1)
        else:
            p99 = served.p99_ms if not math.isinf(served.p99_ms) else 1000 * platform.startup_s
        requests = served.in_pods + queued
        sample_sum += requests
        if (step + 1) % per_sample == 0:
            scaler.record(t + dt, sample_sum / per_sample)
            sample_sum = 0.0
        if (step + 1) % per_tick == 0:
            want = scaler.decide(t + dt, ready)
            in_path = activator_in_path(kpa, ready, scaler.panic_value(t + dt))
            ready, starting = _apply(want, ready, starting, t + dt + platform.startup_s)
        rows.append(
            (
                t,
                rate,
                ready,
                ready + len(starting),
                p99,
                served.rejected,
                requests,
                in_path,
                scaler.panic_since is not None,
            )
        )
    columns = list(zip(*rows, strict=True)) if rows else [()] * 9
    return Trace(
        t=tuple(columns[0]),
        offered=tuple(columns[1]),
        ready=tuple(columns[2]),
        pods=tuple(columns[3]),
        p99_ms=tuple(columns[4]),
        rejected=tuple(columns[5]),
        concurrency=tuple(columns[6]),
        activator=tuple(columns[7]),
        panic=tuple(columns[8]),
        step_s=dt,
    )


def _apply(want: int, ready: int, starting: list[float], ready_at: float) -> tuple[int, list[float]]:
    """Start or remove pods to reach ``want``: starting pods go first (newest first), then ready ones."""
    have = ready + len(starting)
    if want > have:
        return ready, starting + [ready_at] * (want - have)
    surplus = have - want
    keep = max(0, len(starting) - surplus)
    surplus -= len(starting) - keep
    return ready - surplus, sorted(starting)[:keep]


# ---- reading the manifest ---------------------------------------------------------------------

AUTOSCALING = "autoscaling.knative.dev/"


def _seconds(value: str) -> float:
    """A Knative duration (``60s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"([0-9.]+)(ms|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def cpu_quantity(value: str) -> float:
    """A Kubernetes CPU quantity (``2``, ``1.5``, ``500m``) in CPUs."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m?)", value)
    if not match:
        raise ValueError(f"not a CPU quantity: {value!r}")
    return float(match[1]) / (1000 if match[2] else 1)


def kpa_from_manifest(service: Mapping[str, Any]) -> Kpa:
    """The revision template's autoscaling settings and its queue-proxy's CPU request; what it
    leaves out is Knative's default."""
    template = service["spec"]["template"]
    all_annotations = {k: str(v) for k, v in (template.get("metadata", {}).get("annotations") or {}).items()}
    annotations = {k.removeprefix(AUTOSCALING): v for k, v in all_annotations.items() if k.startswith(AUTOSCALING)}
    sidecar_cpu = all_annotations.get(QUEUE_SIDECAR + "cpu-resource-request")
    if annotations.get("class", "kpa.autoscaling.knative.dev") != "kpa.autoscaling.knative.dev":
        raise ValueError("the manifest does not use the KPA")
    if annotations.get("metric", "concurrency") != "concurrency":
        raise ValueError("only the concurrency metric is modelled")
    d = Kpa()
    return Kpa(
        target=float(annotations.get("target", d.target)),
        utilization_pct=float(annotations.get("target-utilization-percentage", d.utilization_pct)),
        container_concurrency=int(template["spec"].get("containerConcurrency", d.container_concurrency)),
        stable_window_s=_seconds(annotations["window"]) if "window" in annotations else d.stable_window_s,
        panic_window_pct=float(annotations.get("panic-window-percentage", d.panic_window_pct)),
        panic_threshold_pct=float(annotations.get("panic-threshold-percentage", d.panic_threshold_pct)),
        target_burst_capacity=float(annotations.get("target-burst-capacity", d.target_burst_capacity)),
        min_scale=int(annotations.get("min-scale", d.min_scale)),
        max_scale=int(annotations.get("max-scale", d.max_scale)),
        initial_scale=int(annotations.get("initial-scale", d.initial_scale)),
        scale_down_delay_s=(
            _seconds(annotations["scale-down-delay"]) if "scale-down-delay" in annotations else d.scale_down_delay_s
        ),
        sidecar_cpu=cpu_quantity(sidecar_cpu) if sidecar_cpu is not None else d.sidecar_cpu,
    )


# ---- the search -------------------------------------------------------------------------------

#: Values tried for each setting. min-scale starts at 1: the scenarios have no idle hours, where
#: min-scale 0 would save its pod and cost a cold start, so they cannot weigh it.
GRID: dict[str, tuple[float, ...]] = {
    "container_concurrency": (16, 24, 32, 48, 64, 96, 128),
    "target": (8, 12, 16, 24, 34, 48, 64, 96),
    "utilization_pct": (50, 70, 85, 100),
    "panic_window_pct": (5, 10, 20),
    "target_burst_capacity": (0, 200, -1),
    "scale_down_delay_s": (0, 30, 120, 300),
    # The queue-proxy's CPUs: at 0.5 ms a request, 1,000 to 8,000 req/s (the pod's peak is 7,912).
    "sidecar_cpu": (0.5, 1, 1.5, 2, 3, 4),
    "min_scale": (1, 2, 3, 4, 5),
}


@dataclass(frozen=True)
class Outcome:
    kpa: Kpa
    summaries: tuple[Summary, ...]  # one a scenario

    @property
    def score(self) -> tuple[float, float, float]:
        """The objective, smaller is better: 503s first, then seconds with p99 above the limit, then
        CPU-seconds (pod-seconds x the CPUs a pod requests, the sidecar's included)."""
        return (
            sum(s.rejected for s in self.summaries),
            sum(s.seconds_over_p99 for s in self.summaries),
            sum(s.cpu_seconds for s in self.summaries),
        )


def evaluate(curve: PodCurve, kpa: Kpa, platform: Platform, scenarios: Sequence[Scenario]) -> Outcome:
    cpus = pod_cpu(kpa, platform)
    return Outcome(kpa, tuple(summarize(simulate(curve, kpa, platform, s), cpus_per_pod=cpus) for s in scenarios))


def _valid(kpa: Kpa) -> bool:
    return kpa.target <= kpa.container_concurrency or kpa.container_concurrency == 0


def search(
    curve: PodCurve,
    start: Kpa,
    platform: Platform,
    scenarios: Sequence[Scenario],
    grid: Mapping[str, Sequence[float]] = GRID,
    passes: int = 3,
) -> tuple[Outcome, int]:
    """Coordinate descent over ``grid`` from ``start``: each setting in turn takes its best value
    with the others held, until a pass changes nothing. Returns the best outcome and the
    number of configurations simulated."""
    cache: dict[Kpa, Outcome] = {}

    def outcome(kpa: Kpa) -> Outcome:
        if kpa not in cache:
            cache[kpa] = evaluate(curve, kpa, platform, scenarios)
        return cache[kpa]

    best = outcome(start)
    for _ in range(passes):
        before = best.kpa
        for name, values in grid.items():
            kind = type(getattr(start, name))
            candidates = [replace(best.kpa, **{name: kind(v)}) for v in values]
            best = min([best, *(outcome(k) for k in candidates if _valid(k))], key=lambda o: o.score)
        if best.kpa == before:
            break
    return best, len(cache)


def choose(
    curve: PodCurve,
    start: Kpa,
    platform: Platform,
    scenarios: Sequence[Scenario],
    grid: Mapping[str, Sequence[float]] = GRID,
    passes: int = 3,
) -> tuple[Outcome, list[Outcome], int]:
    """For each min-scale of ``grid``, the best of the other settings (``search``). The chosen is
    the one with the fewest warm pods that has no 503s and no second over the p99 limit (warm
    pods cost around the clock, which scenarios without idle hours cannot show), else the best
    score overall. Returns it, the best for each min-scale, and the configurations simulated."""
    others = {k: v for k, v in grid.items() if k != "min_scale"}
    per_min_scale, simulated = [], 0
    for warm in grid.get("min_scale", (start.min_scale,)):
        best, count = search(curve, replace(start, min_scale=int(warm)), platform, scenarios, others, passes)
        per_min_scale.append(best)
        simulated += count
    meeting = [o for o in per_min_scale if o.score[0] == 0 and o.score[1] == 0]
    if not meeting:
        return min(per_min_scale, key=lambda o: o.score), per_min_scale, simulated
    # The settings that scale best from the fewest warm pods, if they also meet the objective with
    # the chosen min-scale: they keep working once the load outgrows the warm pods.
    robust = evaluate(curve, replace(per_min_scale[0].kpa, min_scale=meeting[0].kpa.min_scale), platform, scenarios)
    chosen = robust if robust.score[:2] == (0, 0) else meeting[0]
    return chosen, per_min_scale, simulated + 1


# ---- the report -------------------------------------------------------------------------------

SETTING_NAMES = {
    "target": "autoscaling.knative.dev/target",
    "utilization_pct": "autoscaling.knative.dev/target-utilization-percentage",
    "container_concurrency": "containerConcurrency",
    "panic_window_pct": "autoscaling.knative.dev/panic-window-percentage",
    "target_burst_capacity": "autoscaling.knative.dev/target-burst-capacity",
    "scale_down_delay_s": "autoscaling.knative.dev/scale-down-delay (s)",
    "sidecar_cpu": "queue.sidecar.serving.knative.dev/cpu-resource-request (CPUs)",
    "min_scale": "autoscaling.knative.dev/min-scale",
    "max_scale": "autoscaling.knative.dev/max-scale",
}


def _fmt(value: float) -> str:
    return f"{value:g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    from bench.tables import markdown_table

    return markdown_table(header, rows)


def _summary_rows(label: str, outcome: Outcome, scenarios: Sequence[Scenario]) -> list[list[object]]:
    return [
        [
            label,
            scenario.name.split(":")[0].split(" 0 ")[0],
            f"{s.rejected:,.0f}",
            f"{s.peak_rejected_per_s:,.0f}",
            f"{s.worst_p99_ms:,.1f}",
            f"{s.seconds_over_p99:g}",
            s.max_pods,
            f"{s.pod_seconds:,.0f}",
            f"{s.cpu_seconds:,.0f}",
        ]
        for scenario, s in zip(scenarios, outcome.summaries, strict=True)
    ]


SUMMARY_HEADER = (
    "settings",
    "scenario",
    "503s",
    "peak 503/s",
    "worst p99 ms",
    "s over 50 ms",
    "max pods",
    "pod-s",
    "CPU-s",
)


def _sidecar_section(curve: PodCurve, platform: Platform, best: Outcome, sidecar_sweep: Sequence[Outcome]) -> list[str]:
    """The queue-proxy's share of a pod: the figure, its sources, the arithmetic, what each size does."""
    cost = platform.sidecar_cpu_ms_per_request
    if cost <= 0:
        return ["## The queue-proxy", "", "Left out of this run (`sidecar_cpu_ms_per_request` 0).", ""]
    app_ms = 1000 * platform.app_cpu / curve.peak_rps
    peak_need = curve.peak_rps * cost / 1000
    chosen = best.kpa.sidecar_cpu
    in_pod = curve.with_sidecar(chosen, cost)
    return [
        "## The queue-proxy",
        "",
        "Knative puts a queue-proxy beside the service in every pod and every request crosses it. The curve "
        "above is the service alone on its 2 CPUs; in a pod the sidecar's CPU comes on top. The model takes "
        f"{cost:g} ms of sidecar CPU per request: a production report of about 500m CPU at 1,000 req/s "
        f"({QUEUE_PROXY_SOURCES[0]}); Red Hat documents up to 1 vCPU per 2,500 req/s (0.4 ms) for each of "
        f"Knative's data-plane components ({QUEUE_PROXY_SOURCES[1]}). **It is not measured here**: there is no "
        "cluster and no queue-proxy binary on this machine. knative/DEPLOY.md has the PromQL that measures it "
        "on a cluster under load; put the result in `QUEUE_PROXY_CPU_MS_PER_REQUEST` (bench/autoscale.py) and "
        "rerun. The arithmetic:",
        "",
        f"- the service: {platform.app_cpu:g} CPUs / {curve.peak_rps:,.0f} req/s at its peak = "
        f"{app_ms:.2f} ms of CPU a request; the sidecar's {cost:g} ms is {cost / app_ms:.1f}x that;",
        f"- to keep up with the service's peak the sidecar needs {curve.peak_rps:,.0f} x {cost:g} ms = "
        f"{peak_need:.2f} CPUs, and the pod {platform.app_cpu:g} + {peak_need:.2f} = "
        f"{platform.app_cpu + peak_need:.2f} CPUs;",
        f"- a sidecar with C CPUs passes at most 1000 x C / {cost:g} req/s; with Knative's default request "
        f"({QUEUE_PROXY_DEFAULT_CPU * 1000:g}m, {QUEUE_PROXY_DEFAULTS_DOCS}) that is "
        f"{1000 * QUEUE_PROXY_DEFAULT_CPU / cost:,.0f} req/s once the node's CPU is all requested.",
        "",
        "So the queue-proxy's CPU is a setting like the others: the search sizes it (the annotation "
        "`queue.sidecar.serving.knative.dev/cpu-resource-request`, with the limit equal) and the cost it "
        "minimises is CPU-seconds, pod-seconds times the pod's CPUs, the sidecar's included. In the model a "
        "pod's throughput is capped at the sidecar's rate, latencies grow in proportion to the throughput "
        f"the cap takes away (Little's law), and each request pays the sidecar's {cost:g} ms once. "
        f"The curve in a pod with the sidecar found ({chosen:g} CPUs, {1000 * chosen / cost:,.0f} req/s at most):",
        "",
        _table(
            ["in flight", "req/s", "p50 ms", "p99 ms"],
            [
                [f"{c:g}", f"{r:,.0f}", f"{m:.2f}", f"{q:.2f}"]
                for c, r, m, q in zip(in_pod.concurrency, in_pod.rps, in_pod.p50_ms, in_pod.p99_ms, strict=True)
            ],
        ),
        "",
        "Each sidecar size tried, with the other settings chosen for it as in the results below (the "
        "smallest min-scale with no 503s and no second over the limit, else the best score); a pod requests "
        f"the service's {platform.app_cpu:g} CPUs plus the sidecar's, warm CPUs are min-scale x pod CPUs "
        "(paid around the clock), and 503s, seconds over the limit and CPU-seconds are summed over both "
        "scenarios:",
        "",
        _table(
            [
                "sidecar CPUs",
                "pod CPUs",
                "sidecar's req/s at most",
                "min-scale",
                "target x utilization",
                "containerConcurrency",
                "warm CPUs",
                "503s",
                "s over 50 ms",
                "CPU-s",
            ],
            [
                [
                    _fmt(o.kpa.sidecar_cpu),
                    _fmt(pod_cpu(o.kpa, platform)),
                    f"{1000 * o.kpa.sidecar_cpu / cost:,.0f}",
                    o.kpa.min_scale,
                    f"{_fmt(o.kpa.target)} x {_fmt(o.kpa.utilization_pct)}%",
                    o.kpa.container_concurrency,
                    _fmt(o.kpa.min_scale * pod_cpu(o.kpa, platform)),
                    f"{o.score[0]:,.0f}",
                    _fmt(o.score[1]),
                    f"{o.score[2]:,.0f}",
                ]
                for o in sidecar_sweep
            ],
        ),
        "",
    ]


def render(
    curve_doc: Mapping[str, Any],
    curve: PodCurve,
    platform: Platform,
    today: Outcome,
    best: Outcome,
    simulated: int,
    sensitivity: Sequence[tuple[float, Outcome, Outcome]],
    sweep: Sequence[Outcome],
    command: str,
    sidecar_sweep: Sequence[Outcome] = (),
) -> str:
    changed = [
        [SETTING_NAMES[name], _fmt(getattr(today.kpa, name)), _fmt(getattr(best.kpa, name))] for name in SETTING_NAMES
    ]
    lines = [
        "# Autoscaling, simulated",
        "",
        f"Generated by `{command}` from `bench/curve.json` ({curve_doc.get('started', '?')}, "
        f"`{curve_doc.get('command', '?')}`; machine: {curve_doc.get('machine', '?')}). "
        "Rerun with `make bench-autoscale` (seconds); remeasure the curve with `make bench-curve`.",
        "",
        "A model of Knative's Pod Autoscaler (KPA) for one revision, fed with one pod's measured "
        "throughput and latency against the requests it holds, playing open-loop load (requests arrive "
        "whatever the answers do). It shows what the settings in `knative/service.yaml` do to the pod "
        "count, p99 latency and 503s, and which values do better. It is a model: the curve was "
        "measured with wrk on the same 2 shared cores as the service (so a pod with 2 dedicated CPUs "
        "does better), the queue-proxy's CPU per request is a published figure, not a measurement "
        "(below), and the start-up time of a pod is an assumption (below, with its sensitivity).",
        "",
        "## The per-pod curve",
        "",
        "Measured points, made non-decreasing (noise on a shared machine averaged out, not believed):",
        "",
        _table(
            ["in flight", "req/s", "p50 ms", "p99 ms", "non-2xx", "others' CPU (cores)"],
            [
                [
                    int(p["concurrency"]),
                    f"{p['rps']:,.0f} ({r:,.0f})",
                    f"{p['p50_ms']:.2f} ({m:.2f})",
                    f"{p['p99_ms']:.2f} ({q:.2f})",
                    p["non_2xx"],
                    f"{p['others_cpu_share']:.2f}",
                ]
                for p, r, m, q in zip(curve_doc["points"], curve.rps, curve.p50_ms, curve.p99_ms, strict=True)
            ],
        ),
        "",
        "Each cell: as measured (as used). Peak used: "
        f"{curve.peak_rps:,.0f} req/s per pod (the service alone); 20,000 req/s needs at least "
        f"{math.ceil(20_000 / curve.peak_rps)} pods running flat out.",
        "",
        *_sidecar_section(curve, platform, best, sidecar_sweep),
        "## Results",
        "",
        "Objective: for each min-scale (the pods kept warm around the clock), a coordinate descent over the "
        "other settings, from today's values, minimises in order the 503s, the seconds with p99 over "
        f"{P99_LIMIT_MS:g} ms and the CPU-seconds (cost: pod-seconds x the CPUs a pod requests, its "
        "queue-proxy's included), summed over both scenarios. The settings chosen are "
        "those of the smallest min-scale with no 503s and no second over the limit (warm pods cost around "
        "the clock, which these scenarios, without idle hours, cannot show), taking the other settings found "
        "for min-scale 1 when they meet the objective too: they keep scaling well once the load outgrows "
        "the warm pods. "
        f"{simulated} configurations simulated, over these values:",
        "",
        _table(
            ["setting", "values tried"],
            [[SETTING_NAMES[k], ", ".join(_fmt(v) for v in vs)] for k, vs in GRID.items()],
        ),
        "",
        _table(SUMMARY_HEADER, _summary_rows("today", today, SCENARIOS) + _summary_rows("found", best, SCENARIOS)),
        "",
        _table(["setting", "today (knative/service.yaml)", "found"], changed),
        "",
        "![pods, p99 and 503s over time](autoscale.png)",
        "",
        "### min-scale, the price of a burst",
        "",
        "The best settings the search found for each min-scale, and what they do:",
        "",
        _table(
            ["setting", *(f"min-scale {o.kpa.min_scale}" for o in sweep)],
            [[SETTING_NAMES[n], *(_fmt(getattr(o.kpa, n)) for o in sweep)] for n in SETTING_NAMES],
        ),
        "",
        _table(
            SUMMARY_HEADER,
            [row for o in sweep for row in _summary_rows(f"min-scale {o.kpa.min_scale}", o, SCENARIOS)],
        ),
        "",
        "### Pod start-up time",
        "",
        f"The runs above assume {platform.startup_s:g} s from the decision to a pod taking requests. "
        "With other start-up times (an image pull takes longer; a pre-pulled image on a warm node less):",
        "",
        _table(
            SUMMARY_HEADER,
            [
                row
                for startup, t_out, b_out in sensitivity
                for row in _summary_rows(f"today, {startup:g} s", t_out, SCENARIOS)
                + _summary_rows(f"found, {startup:g} s", b_out, SCENARIOS)
            ],
        ),
        "",
        "## The model and its assumptions",
        "",
        f"Steps of {platform.step_s:g} s. In each, the ready pods complete the work offered at the "
        "steady state of the curve (latencies are milliseconds, steps hundreds of them): a pod holds the "
        "fewest requests at which it completes its share, up to containerConcurrency; beyond, pods run at "
        "containerConcurrency and the rest wait in order in the activator (when it is in the path) or in "
        "the queue-proxies, up to their buffers, and are refused with 503 beyond them. A step's p99 is the "
        "curve's p99 at the pods' concurrency plus the wait of the last request queued. Traffic is spread "
        "evenly over ready pods; a pod being removed stops taking requests at once; the activator's own "
        "hop (about a millisecond) is left out; the queue-proxy caps each pod as above; no request waits "
        "anywhere near the revision's 60 s timeout in these scenarios.",
        "",
        _table(["Knative setting", "Knative's default", "in the model", "documented at"], ASSUMPTIONS),
        "",
        f"Not Knative settings: a pod takes requests {platform.startup_s:g} s after the decision to start it "
        "(the service is ready 0.3-0.6 s after its process starts, bench/RESULTS.md; about 1.5 s after "
        "its container starts, `make container-test`; about 1 s of scheduling onto a node with room, "
        "1.5 s to create the container from a cached image and 1 s for readiness to reach the activator "
        "are assumed); the cluster has room for `max-scale` pods (no node autoscaling).",
        "",
    ]
    return "\n".join(lines)


def plot(traces: Mapping[str, Sequence[Trace]], path: Path) -> None:
    """Pods, p99 and 503s per second over time: one column a scenario, one line a configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(SCENARIOS), figsize=(12, 8), sharex="col", squeeze=False)
    for label, per_scenario in traces.items():
        for col, trace in enumerate(per_scenario):
            dt = trace.step_s
            axes[0][col].step(trace.t, trace.pods, where="post", label=f"{label}: pods")
            axes[1][col].plot(trace.t, [max(p, 0.1) for p in trace.p99_ms], label=label)
            axes[2][col].plot(trace.t, [r / dt for r in trace.rejected], label=label)
    for col, scenario in enumerate(SCENARIOS):
        axes[0][col].set_title(scenario.name, fontsize=9)
        load = axes[0][col].twinx()
        trace = next(iter(traces.values()))[col]
        load.plot(trace.t, trace.offered, color="grey", linestyle=":", label="offered req/s")
        load.set_ylabel("offered req/s (dotted)")
        axes[0][col].set_ylabel("pods")
        axes[1][col].set_yscale("log")
        axes[1][col].axhline(P99_LIMIT_MS, color="red", linewidth=0.8, linestyle="--")
        axes[1][col].set_ylabel("p99 ms")
        axes[2][col].set_ylabel("503 per s")
        axes[2][col].set_xlabel("seconds")
        axes[0][col].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- the command ------------------------------------------------------------------------------


def load_curve(path: Path) -> tuple[dict[str, Any], PodCurve]:
    doc = json.loads(path.read_text())
    return doc, PodCurve.from_points(doc["points"])


def load_manifest(path: Path) -> Kpa:
    (service,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Service"]
    return kpa_from_manifest(service)


def run(
    curve_path: Path, manifest: Path, out: Path, png: Path, command: str, passes: int, log: Callable[[str], None]
) -> Outcome:
    curve_doc, curve = load_curve(curve_path)
    platform = Platform()
    today_kpa = load_manifest(manifest)
    started = time.monotonic()
    today = evaluate(curve, today_kpa, platform, SCENARIOS)
    best, sweep, simulated = choose(curve, today_kpa, platform, SCENARIOS, passes=passes)
    sensitivity = [
        (
            s,
            evaluate(curve, today_kpa, replace(platform, startup_s=s), SCENARIOS),
            evaluate(curve, best.kpa, replace(platform, startup_s=s), SCENARIOS),
        )
        for s in (2.5, 10.0, 20.0)
    ]
    others = {name: values for name, values in GRID.items() if name != "sidecar_cpu"}
    sidecar_sweep = [
        choose(curve, replace(best.kpa, sidecar_cpu=float(cpu)), platform, SCENARIOS, others, passes)[0]
        for cpu in GRID["sidecar_cpu"]
    ]
    log(f"{simulated} configurations simulated in {time.monotonic() - started:.1f} s")
    report = render(curve_doc, curve, platform, today, best, simulated, sensitivity, sweep, command, sidecar_sweep)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    plot(
        {
            "today": [simulate(curve, today_kpa, platform, s) for s in SCENARIOS],
            "found": [simulate(curve, best.kpa, platform, s) for s in SCENARIOS],
        },
        png,
    )
    log(f"wrote {out} and {png}")
    return best


def main(argv: Sequence[str] | None = None) -> int:
    from bench.paths import BENCH, OUT, ROOT

    parser = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--curve", type=Path, default=BENCH / "curve.json")
    parser.add_argument("--manifest", type=Path, default=ROOT / "knative" / "service.yaml")
    parser.add_argument("--smoke", action="store_true", help="one search pass; write to bench/out/")
    parser.add_argument("--out", type=Path, help="report (default bench/AUTOSCALE.md, smoke bench/out/)")
    args = parser.parse_args(argv)
    out = args.out or (OUT / "AUTOSCALE.md" if args.smoke else BENCH / "AUTOSCALE.md")
    command = "python -m bench.autoscale" + (" --smoke" if args.smoke else "")
    best = run(args.curve, args.manifest, out, out.with_name("autoscale.png"), command, 1 if args.smoke else 3, print)
    print("found:", {SETTING_NAMES[k]: _fmt(getattr(best.kpa, k)) for k in SETTING_NAMES})
    print(json.dumps([dataclasses.asdict(s) for s in best.summaries], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
