"""How Knative scales the service: autoscaling annotations Knative knows, with valid values, on
the revision template only; a hard concurrency limit above the soft target; a queue-proxy sized
for Guaranteed QoS. The numbers come from bench/AUTOSCALE.md, and their lines in
knative/service.yaml say so (pkg/apis/autoscaling, pkg/apis/serving/register.go)."""

from __future__ import annotations

import re

import pytest

from tests.deployment.manifests import KNATIVE, knative_service, quantity
from tests.helpers import ROOT

KNATIVE_MAX_CONTAINER_CONCURRENCY = 1000  # config-defaults container-concurrency-max-limit
AUTOSCALING = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
AUTOSCALING_KEYS = {
    AUTOSCALING + key
    for key in (
        "class", "metric", "target", "target-utilization-percentage", "target-burst-capacity",
        "min-scale", "max-scale", "initial-scale", "activation-scale", "scale-down-delay",
        "scale-to-zero-pod-retention-period", "window", "panic-window-percentage",
        "panic-threshold-percentage", "metric-aggregation-algorithm",
    )
}  # fmt: skip
# The queue-proxy's resources, per revision (pkg/apis/serving/register.go); resource-percentage
# is deprecated (Knative's webhook answers it with a warning) and so not among them.
QUEUE_SIDECAR = "queue.sidecar.serving.knative.dev/"
QUEUE_SIDECAR_KEYS = {
    QUEUE_SIDECAR + f"{resource}-resource-{kind}"
    for resource in ("cpu", "memory", "ephemeral-storage")
    for kind in ("request", "limit")
}
PLACEHOLDER_NOTE = "# from bench/AUTOSCALE.md"


def revision_annotations() -> dict[str, str]:
    return dict(knative_service()["spec"]["template"]["metadata"].get("annotations", {}))


def queue_sidecar_annotations() -> dict[str, str]:
    return {k: v for k, v in revision_annotations().items() if k.startswith(QUEUE_SIDECAR)}


def test_autoscaling_annotations_are_known_keys_with_valid_values() -> None:
    found = {k: v for k, v in revision_annotations().items() if k.startswith(AUTOSCALING)}
    assert set(found) <= AUTOSCALING_KEYS, set(found) - AUTOSCALING_KEYS
    number = {k.removeprefix(AUTOSCALING): float(v) for k, v in found.items() if re.fullmatch(r"[0-9.]+", v)}
    autoscaler = found[AUTOSCALING + "class"]
    assert autoscaler in (KPA, HPA)
    assert found[AUTOSCALING + "metric"] in ({"concurrency", "rps"} if autoscaler == KPA else {"cpu", "memory"})
    assert number["target"] >= 0.01
    assert 1 <= number["target-utilization-percentage"] <= 100
    for key in ("min-scale", "max-scale", "initial-scale"):
        assert number[key].is_integer(), key
        assert number[key] >= 0, key
    assert number["min-scale"] <= number["max-scale"]
    assert number["initial-scale"] >= 1, "initial-scale 0 needs the cluster's allow-zero-initial-scale"


def test_autoscaling_is_configured_on_the_revision_template_only() -> None:
    assert not [k for k in knative_service()["metadata"].get("annotations", {}) if k.startswith(AUTOSCALING)]


def test_container_concurrency_is_a_hard_limit_knative_allows() -> None:
    concurrency = knative_service()["spec"]["template"]["spec"]["containerConcurrency"]
    assert 0 <= concurrency <= KNATIVE_MAX_CONTAINER_CONCURRENCY


def test_the_soft_target_does_not_exceed_the_hard_limit() -> None:
    concurrency = knative_service()["spec"]["template"]["spec"]["containerConcurrency"]
    assert float(revision_annotations()[AUTOSCALING + "target"]) <= concurrency


def test_the_queue_proxy_is_sized_with_the_annotations_knative_reads() -> None:
    found = queue_sidecar_annotations()
    assert found, "without them the queue-proxy gets Knative's default 25m CPU and no limit"
    assert set(found) <= QUEUE_SIDECAR_KEYS, set(found) - QUEUE_SIDECAR_KEYS
    for key, value in found.items():
        assert quantity(value) > 0, key
    assert not [k for k in knative_service()["metadata"].get("annotations", {}) if k.startswith(QUEUE_SIDECAR)]


def test_the_queue_proxy_s_requests_equal_its_limits_so_the_pod_is_guaranteed() -> None:
    """A pod is Guaranteed QoS only if every container, the queue-proxy included, has CPU and
    memory limits equal to its requests."""
    found = queue_sidecar_annotations()
    for resource in ("cpu", "memory"):
        request = found[QUEUE_SIDECAR + f"{resource}-resource-request"]
        assert quantity(request) == quantity(found[QUEUE_SIDECAR + f"{resource}-resource-limit"]), resource


#: What a manifest leaves out of bench/AUTOSCALE.md's settings: Knative's defaults (config-autoscaler).
KNATIVE_DEFAULTS = {AUTOSCALING + "target-burst-capacity": "200", AUTOSCALING + "scale-down-delay": "0s"}


def autoscaling_report() -> dict[str, tuple[str, str]]:
    """bench/AUTOSCALE.md's table of settings: the name as the report gives it -> (today, found)."""
    rows: dict[str, tuple[str, str]] = {}
    inside = False
    for line in (ROOT / "bench" / "AUTOSCALE.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[1:] == ["today (knative/service.yaml)", "found"]:
            inside = True
        elif inside and line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = (cells[1], cells[2])
        elif inside and not line.startswith("|"):
            break
    return rows


def seconds(duration: str) -> float:
    """A duration as Knative writes it (``0s``, ``90s``, ``15m``, ``1h30m``) in seconds."""
    parts = re.findall(r"([0-9.]+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_the_manifest_runs_what_the_autoscaling_report_found() -> None:
    """bench/AUTOSCALE.md was made from this manifest (its "today") and found these values, the
    queue-proxy's CPU among them."""
    report = autoscaling_report()
    assert QUEUE_SIDECAR + "cpu-resource-request (CPUs)" in report
    manifest = KNATIVE_DEFAULTS | revision_annotations()
    manifest["containerConcurrency"] = str(knative_service()["spec"]["template"]["spec"]["containerConcurrency"])
    for setting, (today, found) in report.items():
        name, _, unit = setting.partition(" (")
        value = seconds(manifest[name]) if unit == "s)" else quantity(manifest[name])
        assert float(today) == float(found) == value, setting


@pytest.mark.parametrize(
    "field",
    [
        "autoscaling.knative.dev/target:",
        "autoscaling.knative.dev/target-utilization-percentage:",
        "autoscaling.knative.dev/panic-window-percentage:",
        "autoscaling.knative.dev/min-scale:",
        "containerConcurrency:",
        QUEUE_SIDECAR + "cpu-resource-request:",
        QUEUE_SIDECAR + "cpu-resource-limit:",
    ],
)
def test_the_concurrency_numbers_say_where_they_come_from(field: str) -> None:
    (line,) = [line for line in (KNATIVE / "service.yaml").read_text().splitlines() if line.strip().startswith(field)]
    assert line.endswith(PLACEHOLDER_NOTE)
