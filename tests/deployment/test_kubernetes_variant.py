"""The plain-Kubernetes variant (knative/kubernetes/): valid for the Kubernetes versions it
targets, the same container as the Knative Service, and spelled out where Knative did the work
(Service, HorizontalPodAutoscaler, termination grace)."""

from __future__ import annotations

import pytest

from function.settings import Settings
from tests.deployment.manifests import (
    KUBERNETES,
    deployment,
    deployment_container,
    env_values,
    knative_container,
    manifest,
    yaml_documents,
)

#: Kubernetes versions the plain variant is validated against: the first with the preStop
#: sleep action generally available, and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("file_name", ["deployment.yaml", "service.yaml", "hpa.yaml"])
def test_kubernetes_manifests_validate_offline(file_name: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (requirements/dev.txt)"
    )
    for document in yaml_documents(KUBERNETES / file_name):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{file_name} ({version}): {'.'.join(map(str, error.path))}: {error.message}")


def test_the_kubernetes_variant_runs_the_same_container_as_knative() -> None:
    knative, plain = knative_container(), deployment_container()
    for field in ("image", "env", "resources", "securityContext", "volumeMounts"):
        assert plain[field] == knative[field], field
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert plain[probe]["httpGet"]["path"] == knative[probe]["httpGet"]["path"], probe


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    deploy = deployment()
    service = manifest(KUBERNETES / "service.yaml", "Service")
    hpa = manifest(KUBERNETES / "hpa.yaml", "HorizontalPodAutoscaler")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in deployment_container()["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    target = hpa["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy["metadata"]["name"]}
    assert "replicas" not in deploy["spec"], "the autoscaler owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in deployment_container()["resources"]["requests"], "CPU utilization is relative to the request"


def test_the_termination_grace_covers_the_pre_stop_pause_and_the_drain() -> None:
    spec, container = deployment()["spec"]["template"]["spec"], deployment_container()
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = Settings.from_env(env_values(container)).shutdown_grace_seconds
    assert spec["terminationGracePeriodSeconds"] > pause + grace
