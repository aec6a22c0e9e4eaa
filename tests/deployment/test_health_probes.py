"""The probes of both variants ask the service's own health routes, leave the port to Knative,
and give the workers the time they may take to start."""

from __future__ import annotations

import pytest

from function.settings import Settings
from tests.deployment.manifests import CONTAINERS, GET_PATHS, env_values, knative_container


@pytest.mark.parametrize("variant", CONTAINERS)
@pytest.mark.parametrize(("probe", "path"), [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")])
def test_probes_ask_the_service_s_health_routes(variant: str, probe: str, path: str) -> None:
    assert CONTAINERS[variant]()[probe]["httpGet"]["path"] == path


@pytest.mark.parametrize("variant", CONTAINERS)
def test_every_probe_path_is_a_get_route(variant: str) -> None:
    container = CONTAINERS[variant]()
    probes = [container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in container]
    assert probes
    for probe in probes:
        assert probe["httpGet"]["path"] in GET_PATHS


def test_knative_probes_leave_the_port_to_knative() -> None:
    container = knative_container()
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = container.get(name, {}).get("httpGet", {}).get("port")
        assert port in (None, container["ports"][0]["containerPort"]), name


def test_aggressive_readiness_probing_sets_no_threshold_or_timeout() -> None:
    probe = knative_container()["readinessProbe"]
    if probe.get("periodSeconds", 0) == 0:
        assert "failureThreshold" not in probe
        assert "timeoutSeconds" not in probe


@pytest.mark.parametrize("variant", CONTAINERS)
def test_startup_probe_waits_as_long_as_the_workers_may_take(variant: str) -> None:
    container = CONTAINERS[variant]()
    probe = container["startupProbe"]
    start_timeout = Settings.from_env(env_values(container)).worker_start_timeout_seconds
    assert probe["periodSeconds"] * probe["failureThreshold"] >= start_timeout
