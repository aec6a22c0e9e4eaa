"""``kubectl apply -k`` applies every manifest of each folder: its kustomization lists them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deployment.manifests import EVENTING, KNATIVE, KUBERNETES, yaml_documents


@pytest.mark.parametrize("folder", [KNATIVE, KUBERNETES, EVENTING])
def test_each_kustomization_lists_every_manifest_beside_it(folder: Path) -> None:
    (kustomization,) = yaml_documents(folder / "kustomization.yaml")
    manifests = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)
