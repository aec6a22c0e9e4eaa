"""Prometheus scrapes every pod of either variant on the service's /metrics: a PodMonitor for the
Knative Service, a ServiceMonitor for the plain-Kubernetes Service."""

from __future__ import annotations

from tests.deployment.manifests import GET_PATHS, KNATIVE, KUBERNETES, knative_service, manifest


def test_the_podmonitor_scrapes_each_pod_of_the_service_directly() -> None:
    monitor = manifest(KNATIVE / "podmonitor.yaml", "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {"serving.knative.dev/service": knative_service()["metadata"]["name"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "user-port", "the name Knative gives the user container's port in its pods"
    assert endpoint["path"] in GET_PATHS
    assert endpoint["path"] == "/metrics"


def test_the_servicemonitor_scrapes_each_pod_behind_the_service() -> None:
    monitor = manifest(KUBERNETES / "servicemonitor.yaml", "ServiceMonitor")
    service = manifest(KUBERNETES / "service.yaml", "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "namespaceSelector" not in monitor["spec"], "the Service's own namespace"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] in GET_PATHS
    assert endpoint["path"] == "/metrics"
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    # Kubernetes labels each pod of a Deployment with its ReplicaSet's pod-template-hash.
    assert relabel["revision"] == ["__meta_kubernetes_pod_label_pod_template_hash"]
