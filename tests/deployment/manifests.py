"""The manifests, read: the Knative Service (knative/), the plain-Kubernetes variant
(knative/kubernetes/), their containers, and the Knative Service CRD schema.

Numbers are read from the files, never repeated in the tests, so their owner can change them
(the concurrency numbers come from bench/AUTOSCALE.md) and the rules still apply.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from function.api.routes import ROUTES
from tests.helpers import ROOT

KNATIVE = ROOT / "knative"
KUBERNETES = KNATIVE / "kubernetes"
EVENTING = KNATIVE / "eventing"
SCHEMAS = ROOT / "tests" / "schemas"
KNATIVE_SCHEMA = SCHEMAS / "knative-service.schema.json"
#: The schema of each kind of Knative resource, from the CRDs (the "x-knative-source" in each).
CRD_SCHEMAS = {
    "Service": KNATIVE_SCHEMA,
    "Broker": SCHEMAS / "knative-broker.schema.json",
    "Trigger": SCHEMAS / "knative-trigger.schema.json",
}
#: What a probe or a scraper may ask for.
GET_PATHS = {path for method, path, _ in ROUTES if method == "GET"}


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def manifest(path: Path, kind: str) -> dict[str, Any]:
    """The one document of ``kind`` in ``path``, shared between callers: copy it to change it."""
    (document,) = [doc for doc in yaml_documents(path) if doc["kind"] == kind]
    return document


def knative_service() -> dict[str, Any]:
    return copy.deepcopy(manifest(KNATIVE / "service.yaml", "Service"))


def deployment() -> dict[str, Any]:
    return copy.deepcopy(manifest(KUBERNETES / "deployment.yaml", "Deployment"))


def knative_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = knative_service()["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def deployment_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment()["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


#: The container and the pod spec of each variant, by the name tests are parametrized with.
CONTAINERS: dict[str, Callable[[], dict[str, Any]]] = {"knative": knative_container, "kubernetes": deployment_container}
POD_SPECS: dict[str, Callable[[], dict[str, Any]]] = {
    "knative": lambda: knative_service()["spec"]["template"]["spec"],
    "kubernetes": lambda: deployment()["spec"]["template"]["spec"],
}


def env_values(container: dict[str, Any]) -> dict[str, str]:
    """The env given as literal values. A name set from a Secret (``valueFrom``) is left out: its
    value is not in the manifest."""
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def env_names(container: dict[str, Any]) -> set[str]:
    return {item["name"] for item in container.get("env", [])}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``2``, ``500m``, ``1Gi``, ``512M``) as a plain number."""
    factors = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match[1]) * factors.get(match[2], 1) if match[2] else float(match[1])


def strict(schema: Any) -> Any:
    """Unknown fields become errors, as with ``kubectl --validate=strict``: every object schema that
    lists its properties, and does not say x-kubernetes-preserve-unknown-fields, gets
    ``additionalProperties: false``."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    open_ended = "additionalProperties" in result or result.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in result and not open_ended:
        result["additionalProperties"] = False
    return result


def schema_errors(document: dict[str, Any]) -> list[str]:
    """What the CRD schema of the document's kind (a Knative Service by default), made strict, finds
    wrong in ``document``."""
    schema = strict(json.loads(CRD_SCHEMAS[document.get("kind", "Service")].read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = jsonschema.Draft7Validator(schema).iter_errors(document)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)
