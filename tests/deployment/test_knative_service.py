"""The Knative Service as Knative admits it: the CRD schema with unknown fields as errors, and
the admission rules of Knative Serving (pkg/apis/serving/k8s_validation.go) on its one container."""

from __future__ import annotations

import os

from function.settings import Settings
from tests.deployment.manifests import env_names, env_values, knative_container, knative_service, schema_errors

KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
KNATIVE_PORT_NAMES = {"", "h2c", "http1"}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_RESERVED_MOUNTS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
KNATIVE_MAX_TIMEOUT_SECONDS = 600  # config-defaults max-revision-timeout-seconds


def test_knative_service_matches_the_crd_schema_with_unknown_fields_as_errors() -> None:
    assert schema_errors(knative_service()) == []


def test_the_strict_schema_rejects_what_knative_does_not_know() -> None:
    service = knative_service()
    service["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    service["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 5}}}
    errors = schema_errors(service)
    assert any("'terminationGracePeriodSeconds' was unexpected" in e for e in errors), errors
    assert any("'lifecycle' was unexpected" in e for e in errors), errors


def test_one_container_with_one_port_that_knative_accepts() -> None:
    containers = knative_service()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    ports = containers[0].get("ports", [])
    assert len(ports) <= 1
    for port in ports:
        assert port["containerPort"] not in KNATIVE_RESERVED_PORTS
        assert port.get("name", "") in KNATIVE_PORT_NAMES
        assert port.get("protocol", "TCP") == "TCP"


def test_knative_injects_port_so_the_manifest_sets_no_reserved_variable() -> None:
    assert not env_names(knative_container()) & KNATIVE_RESERVED_ENV


def test_knative_manifest_has_no_termination_grace_period_or_lifecycle_hook() -> None:
    spec = knative_service()["spec"]["template"]["spec"]
    assert "terminationGracePeriodSeconds" not in spec
    assert all("lifecycle" not in container for container in spec["containers"])


def test_request_timeout_outlasts_the_shutdown_grace() -> None:
    """Knative makes timeoutSeconds the pod's termination grace period, so draining must fit in it."""
    spec = knative_service()["spec"]["template"]["spec"]
    grace = Settings.from_env(env_values(knative_container())).shutdown_grace_seconds
    assert grace < spec["timeoutSeconds"] <= KNATIVE_MAX_TIMEOUT_SECONDS


def test_volume_mounts_avoid_the_paths_knative_reserves() -> None:
    for mount in knative_container().get("volumeMounts", []):
        assert os.path.normpath(mount["mountPath"]) not in KNATIVE_RESERVED_MOUNTS
