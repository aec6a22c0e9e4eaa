"""The env of both variants: only settings the service reads, with valid values, and the
feedback key from an optional Secret, never a literal."""

from __future__ import annotations

import dataclasses

import pytest

from function.settings import Settings
from tests.deployment.manifests import CONTAINERS, env_names, env_values

SETTINGS_ENV = {f.metadata["env"]: f for f in dataclasses.fields(Settings)}


@pytest.mark.parametrize("variant", CONTAINERS)
def test_every_env_name_is_a_setting_the_service_reads(variant: str) -> None:
    names = env_names(CONTAINERS[variant]())
    assert names
    assert names <= set(SETTINGS_ENV), names - set(SETTINGS_ENV)


@pytest.mark.parametrize("variant", CONTAINERS)
def test_env_values_are_valid_settings(variant: str) -> None:
    Settings.from_env(env_values(CONTAINERS[variant]()))


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_feedback_key_comes_from_a_secret_the_service_can_start_without(variant: str) -> None:
    (item,) = [item for item in CONTAINERS[variant]().get("env", []) if item["name"] == "FEEDBACK_KEY"]
    assert set(item) == {"name", "valueFrom"}, "never a literal key in the manifest"
    (source,) = item["valueFrom"].values()
    assert set(item["valueFrom"]) == {"secretKeyRef"}
    assert source["name"], "the Secret's name"
    assert source["key"], "the key in the Secret"
    assert source["optional"] is True, "without the Secret the pod must still start (feedback off)"
    assert Settings.from_env({}).feedback_key == "", "the service's own default: feedback off"
