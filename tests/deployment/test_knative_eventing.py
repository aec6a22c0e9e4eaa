"""knative/eventing/: the Broker, the Triggers and the reply sink, as Knative Eventing's CRD schemas
(unknown fields as errors) and its webhook take them, and as the service reads events: its types,
its path, its Service, its timeouts."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from function.api.routes import ROUTES
from function.cloudevents.event_types import CLASSIFIED, CLASSIFY, EVENTS_PATH
from function.settings import Settings
from tests.deployment.manifests import (
    CRD_SCHEMAS,
    EVENTING,
    KNATIVE,
    env_values,
    knative_container,
    knative_service,
    schema_errors,
    yaml_documents,
)

DOCUMENTS = [doc for path in sorted(EVENTING.glob("*.yaml")) for doc in yaml_documents(path)]
RESOURCES = [doc for doc in DOCUMENTS if doc["kind"] != "Kustomization"]
#: The fields of a DeliverySpec that Knative's webhook takes with no feature flag set
#: (knative/eventing pkg/apis/duck/v1/delivery_types.go; ``timeout`` is BETA, on by default).
DELIVERY_FIELDS = {"retry", "backoffPolicy", "backoffDelay", "deadLetterSink", "timeout"}
TRIGGER_FIELDS = {"broker", "filter", "subscriber", "delivery"}


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [doc for doc in RESOURCES if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    return copy.deepcopy(found)


def trigger_for(event_type: str) -> dict[str, Any]:
    triggers = [doc for doc in RESOURCES if doc["kind"] == "Trigger"]
    (found,) = [doc for doc in triggers if doc["spec"]["filter"]["attributes"] == {"type": event_type}]
    return copy.deepcopy(found)


def seconds(duration: str) -> float:
    """An ISO 8601 duration of hours, minutes and seconds (``PT0.5S``, ``PT1M30S``) in seconds."""
    match = re.fullmatch(r"PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", duration)
    assert match, f"not an ISO 8601 duration Knative reads: {duration!r}"
    hours, minutes, secs = (float(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + secs


@pytest.mark.parametrize("document", RESOURCES, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in RESOURCES])
def test_each_resource_matches_its_crd_schema_with_unknown_fields_as_errors(document: dict[str, Any]) -> None:
    assert document["kind"] in CRD_SCHEMAS
    assert schema_errors(document) == []


def test_the_strict_schemas_reject_what_knative_does_not_know() -> None:
    trigger = trigger_for(CLASSIFY)
    trigger["spec"]["filter"] = {"attribute": {"type": CLASSIFY}}
    assert any("'attribute' was unexpected" in error for error in schema_errors(trigger))
    broker = one("Broker")
    broker["spec"]["deliver"] = broker["spec"].pop("delivery")
    assert any("'deliver' was unexpected" in error for error in schema_errors(broker))


def test_triggers_set_only_fields_knative_admits() -> None:
    """The CRD keeps unknown fields of a Trigger's spec and of any delivery, so a typo there passes
    the schema; and retryAfterMax passes it, but the webhook refuses it unless the ALPHA feature
    delivery-retryafter is on."""
    deliveries = [one("Broker")["spec"]["delivery"]]
    for trigger in (doc for doc in RESOURCES if doc["kind"] == "Trigger"):
        assert set(trigger["spec"]) <= TRIGGER_FIELDS, trigger["metadata"]["name"]
        deliveries.append(trigger["spec"].get("delivery", {}))
    for delivery in deliveries:
        assert set(delivery) <= DELIVERY_FIELDS
        assert delivery.get("backoffPolicy", "exponential") in ("linear", "exponential")
        for duration in ("backoffDelay", "timeout"):
            if duration in delivery:
                assert seconds(delivery[duration]) > 0


def test_the_classify_trigger_posts_the_services_type_to_the_classifier_at_its_events_path() -> None:
    subscriber = trigger_for(CLASSIFY)["spec"]["subscriber"]
    assert subscriber["ref"] == {
        "apiVersion": knative_service()["apiVersion"],
        "kind": "Service",
        "name": knative_service()["metadata"]["name"],
    }
    assert subscriber.get("uri", "/") == EVENTS_PATH


def test_replies_go_to_a_sink_of_their_own_and_never_back_to_the_classifier() -> None:
    replies = trigger_for(CLASSIFIED)
    assert replies["spec"]["subscriber"]["ref"]["name"] != knative_service()["metadata"]["name"]
    assert trigger_for(CLASSIFY)["spec"]["filter"]["attributes"]["type"] != CLASSIFIED


def test_every_trigger_listens_on_the_broker_defined_here() -> None:
    broker = one("Broker")["metadata"]["name"]
    assert {doc["spec"]["broker"] for doc in RESOURCES if doc["kind"] == "Trigger"} == {broker}


def test_every_service_a_trigger_names_is_defined_here_or_in_knative() -> None:
    services = {doc["metadata"]["name"] for doc in RESOURCES if doc["kind"] == "Service"}
    services.add(knative_service()["metadata"]["name"])
    for trigger in (doc for doc in RESOURCES if doc["kind"] == "Trigger"):
        spec = trigger["spec"]
        for destination in (spec["subscriber"], spec.get("delivery", {}).get("deadLetterSink")):
            if destination is not None:
                assert destination["ref"]["kind"] == "Service"
                assert destination["ref"]["name"] in services


def test_the_classify_delivery_waits_longer_than_an_inference_may_take_and_less_than_the_service() -> None:
    """The service answers a hung inference with its own 503 (retried) before the Broker gives up,
    and the Broker gives up before the Service's own request timeout."""
    delivery = trigger_for(CLASSIFY)["spec"]["delivery"]
    settings = Settings.from_env(env_values(knative_container()))
    timeout = seconds(delivery["timeout"])
    assert (
        settings.inference_timeout_seconds < timeout < knative_service()["spec"]["template"]["spec"]["timeoutSeconds"]
    )
    assert "deadLetterSink" in delivery, "events refused for good (400, 415) are kept, not dropped"


def test_knative_itself_applies_without_eventing() -> None:
    """Without Eventing's CRDs, `kubectl apply -k knative/` would fail on a Broker or a Trigger."""
    (kustomization,) = yaml_documents(KNATIVE / "kustomization.yaml")
    kinds = {doc["kind"] for name in kustomization["resources"] for doc in yaml_documents(KNATIVE / name)}
    assert not kinds & {"Broker", "Trigger"}


def test_the_events_path_is_a_post_route_of_the_service() -> None:
    assert ("POST", EVENTS_PATH) in {(method, path) for method, path, _ in ROUTES}
