"""The autoscaling simulator (bench/autoscale.py): Knative's KPA rules, stated as behaviour.

A synthetic pod that completes 1000 requests a second per request it holds, up to 32 at once
(then it is saturated), keeps the arithmetic visible; it has no queue-proxy unless a test gives
it one. Times are simulated seconds, never the clock's.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml

from bench.autoscale import (
    QUEUE_PROXY_CPU_MS_PER_REQUEST,
    QUEUE_PROXY_DEFAULT_CPU,
    SETTING_NAMES,
    Kpa,
    Platform,
    PodCurve,
    Scenario,
    activator_in_path,
    cpu_quantity,
    evaluate,
    isotonic,
    kpa_from_manifest,
    pod_cpu,
    search,
    serve_step,
    simulate,
)
from tests.helpers import ROOT

CURVE = PodCurve.from_points(
    {"concurrency": c, "rps": 1000.0 * min(c, 32), "p50_ms": 1.0 * max(1, c / 32), "p99_ms": 2.0 * max(1, c / 32)}
    for c in (1, 2, 4, 8, 16, 32, 64, 128)
)
PLATFORM = Platform(startup_s=5.0, sidecar_cpu_ms_per_request=0.0)  # no queue-proxy modelled
KPA = Kpa(target=8, utilization_pct=100, container_concurrency=16, min_scale=1, max_scale=0, initial_scale=1)


def constant(rate: float, seconds: float) -> Scenario:
    return Scenario("constant", ((0, rate), (seconds, rate)))


def steps(*pieces: tuple[float, float]) -> Scenario:
    """(seconds, rate) pieces one after another."""
    knots: list[tuple[float, float]] = []
    t = 0.0
    for seconds, rate in pieces:
        knots += [(t, rate), (t + seconds, rate)]
        t += seconds
    return Scenario("steps", tuple(knots))


def decisions(trace_pods: tuple[int, ...], per_tick: int) -> list[int]:
    """The pod count after each autoscaler decision."""
    return list(trace_pods[per_tick - 1 :: per_tick])


# ---- the curve -------------------------------------------------------------------------------


def test_measured_noise_never_makes_throughput_fall_with_concurrency() -> None:
    noisy = PodCurve.from_points(
        {"concurrency": c, "rps": r, "p50_ms": 1.0, "p99_ms": 2.0}
        for c, r in ((1, 1000), (2, 1900), (4, 1700), (8, 3000), (16, 2600), (32, 2800))
    )
    assert list(noisy.rps) == sorted(noisy.rps)
    assert isotonic([3, 1, 2]) == [2, 2, 2]
    assert isotonic([1, 2, 3]) == [1, 2, 3]


def test_the_concurrency_a_rate_needs_inverts_throughput() -> None:
    for rate in (500, 1000, 7500, 31_000):
        assert CURVE.throughput(CURVE.concurrency_for(rate)) == pytest.approx(rate)
    assert CURVE.concurrency_for(CURVE.peak_rps) == 32


def test_past_the_last_point_a_saturated_pod_only_queues() -> None:
    assert CURVE.throughput(256) == CURVE.peak_rps
    assert CURVE.p99(256) == pytest.approx(2 * CURVE.p99(128))


# ---- settings --------------------------------------------------------------------------------


def test_the_kpa_aims_at_the_soft_target_capped_by_the_hard_limit_times_utilization() -> None:
    assert Kpa(target=34, container_concurrency=48, utilization_pct=100).target_value == 34
    assert Kpa(target=64, container_concurrency=48, utilization_pct=50).target_value == 24
    assert Kpa(target=100, container_concurrency=0, utilization_pct=70).target_value == pytest.approx(70)
    assert Kpa().panic_window_s == 6


def test_the_manifest_s_annotations_are_what_is_simulated() -> None:
    service = yaml.safe_load((ROOT / "knative" / "service.yaml").read_text())
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    kpa = kpa_from_manifest(service)
    assert kpa.target == float(annotations["autoscaling.knative.dev/target"])
    assert kpa.container_concurrency == service["spec"]["template"]["spec"]["containerConcurrency"]
    assert kpa.min_scale == int(annotations["autoscaling.knative.dev/min-scale"])
    assert kpa.max_scale == int(annotations["autoscaling.knative.dev/max-scale"])
    for key, field in (
        ("target-burst-capacity", "target_burst_capacity"),
        ("panic-window-percentage", "panic_window_pct"),
    ):
        expected = float(annotations.get("autoscaling.knative.dev/" + key, getattr(Kpa(), field)))
        assert getattr(kpa, field) == expected
    assert kpa.sidecar_cpu == cpu_quantity(annotations["queue.sidecar.serving.knative.dev/cpu-resource-request"])


def test_what_a_manifest_leaves_out_is_knative_s_default() -> None:
    bare = {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
    assert kpa_from_manifest(bare) == Kpa()
    assert Kpa().sidecar_cpu == QUEUE_PROXY_DEFAULT_CPU == 0.025  # config-deployment's 25m


def test_cpu_quantities_read_as_kubernetes_writes_them() -> None:
    assert cpu_quantity("4") == 4
    assert cpu_quantity("1.5") == 1.5
    assert cpu_quantity("250m") == 0.25
    with pytest.raises(ValueError, match="not a CPU quantity"):
        cpu_quantity("2Gi")


def test_the_service_s_container_has_the_cpus_the_curve_was_measured_with() -> None:
    service = yaml.safe_load((ROOT / "knative" / "service.yaml").read_text())
    (container,) = service["spec"]["template"]["spec"]["containers"]
    assert cpu_quantity(str(container["resources"]["requests"]["cpu"])) == Platform().app_cpu


def report_table(title_cell: str) -> dict[str, list[str]]:
    """A table of bench/AUTOSCALE.md, by its first column, found by the header's second cell."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in (ROOT / "bench" / "AUTOSCALE.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1 and cells[1] == title_cell:
            inside = True
        elif inside and line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
        elif inside and not line.startswith("|"):
            break
    return rows


def test_the_manifest_runs_what_the_report_found() -> None:
    """bench/AUTOSCALE.md was generated from this manifest (its "today") and found these values."""
    table = report_table("today (knative/service.yaml)")
    kpa = kpa_from_manifest(yaml.safe_load((ROOT / "knative" / "service.yaml").read_text()))
    assert set(table) == set(SETTING_NAMES.values())
    for field, name in SETTING_NAMES.items():
        today, found = table[name]
        assert float(today) == float(found) == getattr(kpa, field), name


# ---- scaling ---------------------------------------------------------------------------------


def test_constant_load_at_exactly_the_target_holds_the_pod_count() -> None:
    kpa = replace(KPA, initial_scale=3)
    # 3 pods at 8 in flight each complete 3 x 8000 req/s.
    trace = simulate(CURVE, kpa, PLATFORM, constant(24_000, 300))
    assert set(trace.pods) == {3}
    assert sum(trace.rejected) == 0
    assert not any(trace.panic)


def test_load_above_the_target_adds_pods_until_each_is_back_at_it() -> None:
    # One pod holds 12 in flight at 12,000 req/s (under its hard limit of 16): 12 / 8 -> 2 pods.
    trace = simulate(CURVE, KPA, PLATFORM, constant(12_000, 300))
    assert trace.pods[-1] == 2
    assert sum(trace.rejected) == 0
    assert trace.concurrency[-1] / trace.ready[-1] <= KPA.target_value


def test_panic_starts_when_the_panic_window_reaches_twice_the_ready_pods_target() -> None:
    kpa = replace(KPA, initial_scale=2, min_scale=2)
    # 2 pods: 11 in flight each is 22 / 8 -> 3 pods wanted, 1.5x the ready pods: no panic.
    calm = simulate(CURVE, kpa, PLATFORM, constant(22_000, 30))
    assert not any(calm.panic)
    # 16 in flight each is 32 / 8 -> 4 pods wanted, 2x: panic.
    burst = simulate(CURVE, kpa, PLATFORM, constant(32_000, 30))
    assert any(burst.panic)


def test_panic_never_scales_down_and_ends_a_stable_window_after_the_burst() -> None:
    trace = simulate(CURVE, KPA, PLATFORM, steps((30, 2_000), (10, 60_000), (200, 500)))
    panicking = [i for i, p in enumerate(trace.panic) if p]
    assert panicking, "a 30x step must panic"
    during = [trace.pods[i] for i in range(panicking[0], panicking[-1] + 1)]
    assert during == sorted(during), "the pod count fell while panicking"
    assert max(trace.pods) > 1
    assert trace.t[panicking[-1]] - trace.t[panicking[0]] >= KPA.stable_window_s - PLATFORM.tick_s
    assert trace.pods[-1] == 1, "after the panic the count falls back"


def test_scale_down_at_most_divides_the_ready_pods_by_the_rate_each_decision() -> None:
    per_tick = round(PLATFORM.tick_s / PLATFORM.step_s)
    for rate in (2.0, 4.0):
        kpa = replace(KPA, initial_scale=16, max_scale_down_rate=rate)
        pods = decisions(simulate(CURVE, kpa, PLATFORM, constant(100, 60)).pods, per_tick)
        assert pods[-1] == 1
        previous = 16
        for count in pods:
            assert count >= math.floor(previous / rate)
            previous = count
        assert pods[0] < 16, "a decision without load scales down"


def test_scale_down_delay_holds_the_pods_for_the_delay() -> None:
    kpa = replace(KPA, initial_scale=3)
    pieces = ((120, 24_000), (200, 100))
    plain = simulate(CURVE, kpa, PLATFORM, steps(*pieces))
    delayed = simulate(CURVE, replace(kpa, scale_down_delay_s=60), PLATFORM, steps(*pieces))

    def last_time_at(trace_pods: tuple[int, ...], t: tuple[float, ...], count: int) -> float:
        return max(time for time, n in zip(t, trace_pods, strict=True) if n >= count)

    assert last_time_at(delayed.pods, delayed.t, 3) >= last_time_at(plain.pods, plain.t, 3) + 60 - PLATFORM.tick_s


def test_zero_traffic_scales_to_zero_after_the_stable_window_and_the_grace() -> None:
    kpa = replace(KPA, min_scale=0, initial_scale=1)
    stopped = 60.0
    scenario = steps((stopped, 1_000), (200, 0))
    trace = simulate(CURVE, kpa, PLATFORM, scenario)
    gone = next(t for t, n in zip(trace.t, trace.pods, strict=True) if n == 0 and t > stopped)
    after = kpa.stable_window_s + kpa.scale_to_zero_grace_s
    assert stopped + after - PLATFORM.tick_s <= gone <= stopped + after + 2 * PLATFORM.tick_s
    assert set(trace.pods[trace.t.index(gone) :]) == {0}
    assert min(simulate(CURVE, KPA, PLATFORM, scenario).pods) == 1, "min-scale 1 keeps a pod"


def test_from_zero_the_activator_holds_requests_until_a_pod_starts() -> None:
    kpa = replace(KPA, min_scale=0, initial_scale=0)
    trace = simulate(CURVE, kpa, PLATFORM, constant(1_000, 60))
    assert trace.pods[0] == 0
    assert sum(trace.rejected) == 0
    assert trace.activator[0]
    assert max(trace.p99_ms) >= 1000 * (PLATFORM.startup_s - PLATFORM.tick_s)
    assert trace.ready[-1] >= 1
    assert trace.p99_ms[-1] < 10


# ---- the queue-proxy's CPU -------------------------------------------------------------------


def test_the_sidecar_caps_a_pod_at_its_cpus_over_the_cpu_each_request_costs() -> None:
    # 2 CPUs at 0.5 ms a request pass 4,000 req/s: the synthetic pod reaches that at 4 in flight.
    pod = CURVE.with_sidecar(cpu=2.0, cpu_ms_per_request=0.5)
    assert pod.peak_rps == 4_000
    assert pod.throughput(128) == 4_000
    assert pod.concurrency_for(4_000) == 4
    # Below the cap the service's curve holds, each request paying the sidecar's 0.5 ms.
    assert pod.throughput(2) == CURVE.throughput(2)
    assert pod.p99(2) == pytest.approx(CURVE.p99(2) + 0.5)
    # Past it the requests wait for the sidecar: 32 in flight at 4,000 req/s instead of 32,000
    # take 8 times as long (Little's law).
    assert pod.p99(32) == pytest.approx(CURVE.p99(32) * 8 + 0.5)


def test_a_sidecar_faster_than_the_pod_only_adds_its_own_time() -> None:
    pod = CURVE.with_sidecar(cpu=32.0, cpu_ms_per_request=0.5)  # 64,000 req/s, twice the pod's peak
    assert pod.rps == CURVE.rps
    assert pod.p50_ms == tuple(p + 0.5 for p in CURVE.p50_ms)


def test_without_a_cpu_cost_the_sidecar_changes_nothing() -> None:
    assert CURVE.with_sidecar(cpu=QUEUE_PROXY_DEFAULT_CPU, cpu_ms_per_request=0.0) is CURVE


def test_a_revision_is_simulated_behind_its_sidecar() -> None:
    with_sidecar = replace(PLATFORM, sidecar_cpu_ms_per_request=QUEUE_PROXY_CPU_MS_PER_REQUEST)
    kpa = replace(KPA, min_scale=1, max_scale=1, target_burst_capacity=-1)
    # 4,000 req/s: one synthetic pod serves it alone; with Knative's default 25m its sidecar
    # passes 50 req/s, with 2 CPUs 4,000.
    load = constant(4_000, 30)
    assert sum(simulate(CURVE, kpa, PLATFORM, load).rejected) == 0
    assert sum(simulate(CURVE, kpa, with_sidecar, load).rejected) > 0
    assert sum(simulate(CURVE, replace(kpa, sidecar_cpu=2.0), with_sidecar, load).rejected) == 0


def test_a_pod_costs_the_service_s_cpus_plus_the_sidecar_s() -> None:
    with_sidecar = replace(PLATFORM, sidecar_cpu_ms_per_request=QUEUE_PROXY_CPU_MS_PER_REQUEST)
    kpa = replace(KPA, sidecar_cpu=1.5)
    assert pod_cpu(kpa, with_sidecar) == with_sidecar.app_cpu + 1.5
    assert pod_cpu(kpa, PLATFORM) == PLATFORM.app_cpu, "a sidecar left out costs nothing"
    (summary,) = evaluate(CURVE, kpa, with_sidecar, [constant(1_000, 30)]).summaries
    assert summary.cpu_seconds == pytest.approx(summary.pod_seconds * (with_sidecar.app_cpu + 1.5))


def test_the_search_pays_for_a_bigger_sidecar_only_when_it_saves_cpu_seconds() -> None:
    with_sidecar = replace(PLATFORM, sidecar_cpu_ms_per_request=QUEUE_PROXY_CPU_MS_PER_REQUEST)
    # 11,000 req/s on one pod held by max-scale: 1 sidecar CPU passes 2,000 of them, 6 pass
    # 12,000, 8 only add cost.
    kpa = replace(KPA, min_scale=1, max_scale=1, container_concurrency=32, target=32, sidecar_cpu=1.0)
    best, _ = search(CURVE, kpa, with_sidecar, [constant(11_000, 30)], grid={"sidecar_cpu": (1, 6, 8)}, passes=1)
    assert best.kpa.sidecar_cpu == 6


# ---- the queue-proxy and the activator -------------------------------------------------------


def test_requests_beyond_container_concurrency_wait_in_the_queue_proxy_then_get_503() -> None:
    dt = PLATFORM.step_s
    peak = CURVE.throughput(KPA.container_concurrency) * dt  # what one pod completes in a step
    depth = PLATFORM.queue_proxy_depth * KPA.container_concurrency
    within = serve_step(CURVE, KPA, PLATFORM, ready=1, queued=0, arrivals=peak + depth, via_activator=False)
    assert within.rejected == 0
    assert within.queued == pytest.approx(depth)
    assert within.p99_ms > CURVE.p99(KPA.container_concurrency)
    beyond = serve_step(CURVE, KPA, PLATFORM, ready=1, queued=0, arrivals=peak + depth + 100, via_activator=False)
    assert beyond.rejected == pytest.approx(100)
    below = serve_step(CURVE, KPA, PLATFORM, ready=1, queued=0, arrivals=peak / 2, via_activator=False)
    assert (below.queued, below.rejected) == (0, 0)
    assert below.in_pods == pytest.approx(KPA.container_concurrency / 2)


def test_the_activator_buffers_more_than_the_queue_proxies_before_503() -> None:
    peak = CURVE.throughput(KPA.container_concurrency) * PLATFORM.step_s
    extra = PLATFORM.activator_buffer + 50
    via = serve_step(CURVE, KPA, PLATFORM, ready=1, queued=0, arrivals=peak + extra, via_activator=True)
    assert via.rejected == pytest.approx(50)
    assert via.queued == pytest.approx(PLATFORM.activator_buffer)


def test_a_pinned_revision_refuses_what_its_pods_and_buffer_cannot_hold() -> None:
    kpa = replace(KPA, min_scale=1, max_scale=1, target_burst_capacity=-1)
    peak = CURVE.throughput(kpa.container_concurrency)
    trace = simulate(CURVE, kpa, PLATFORM, constant(peak + 2_000, 20))
    assert sum(trace.rejected) == pytest.approx(2_000 * 20 - PLATFORM.activator_buffer)
    assert set(trace.pods) == {1}


def test_the_activator_is_in_the_path_while_spare_capacity_is_below_the_burst_capacity() -> None:
    kpa = replace(KPA, target_burst_capacity=20)  # total 8 a pod
    assert activator_in_path(kpa, ready=0, panic_value=0)
    assert activator_in_path(kpa, ready=3, panic_value=5)  # 24 - 20 - 5 < 0
    assert not activator_in_path(kpa, ready=4, panic_value=5)  # 32 - 20 - 5 >= 0
    assert activator_in_path(replace(kpa, target_burst_capacity=-1), ready=100, panic_value=0)
    assert not activator_in_path(replace(kpa, target_burst_capacity=0), ready=1, panic_value=1000)


# ---- the search ------------------------------------------------------------------------------


def test_the_search_never_returns_worse_than_where_it_started() -> None:
    scenarios = [steps((30, 2_000), (30, 40_000), (30, 2_000))]
    start = evaluate(CURVE, KPA, PLATFORM, scenarios)
    best, simulated = search(CURVE, KPA, PLATFORM, scenarios, grid={"min_scale": (1, 2)}, passes=1)
    assert simulated >= 2
    assert best.score <= start.score
    assert best.kpa.min_scale == 2, "a warm second pod absorbs the burst's excess"
