"""knative/grafana-dashboard.json: what an operator importing it needs, checked from the file.

Its variables (data source, namespace, revision, pod), the filters of every query, the metric
names against a real ``Metrics`` object's exposition, ``$__rate_interval`` everywhere and a
layout without overlaps. ``tests/test_prometheus_e2e.py`` runs the same queries against a real
Prometheus.
"""

from __future__ import annotations

import itertools
import json
import re
from functools import cache
from typing import Any

import pytest
import yaml

from function.api.routes import ROUTES
from function.metrics import Metrics
from tests.helpers import ROOT

DASHBOARD = ROOT / "knative/grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The labels the dashboard filters by, as the scrape configs produce them: the Prometheus
#: Operator adds namespace and pod to every PodMonitor and ServiceMonitor target; revision comes
#: from each monitor's relabelling (``test_each_monitor_produces_the_revision_label``).
FILTERS = {"namespace": "$namespace", "revision": "$revision", "pod": "$pod"}
MONITORS = {
    "knative/podmonitor.yaml": ("PodMonitor", "podMetricsEndpoints"),
    "knative/kubernetes/servicemonitor.yaml": ("ServiceMonitor", "endpoints"),
}
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
#: An identifier that is not a function call: after selectors, groupings and ranges are taken
#: out of a query, whatever is left is a metric name without a selector, or a keyword.
BARE_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()")
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
#: Series every pod exposes from its start (the model's info) or once it answers a request.
VARIABLE_SOURCES = "textclf_model_info|textclf_http_requests_total"


@cache
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return list(dashboard()["panels"])


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Each ``metric{...}`` of a query, with its matchers as label -> (operator, value)."""
    return [
        (name, {label: (op, value) for label, op, value in MATCHER.findall(body)})
        for name, body in SELECTOR.findall(expr)
    ]


def bare_names(expr: str) -> list[str]:
    """Metric names used without a ``{...}`` selector (so without the dashboard's filters)."""
    rest = GROUPING.sub(" ", SELECTOR.sub(" ", expr))
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', " ", rest)  # string arguments (label_replace's) name no metric
    return [name for name in BARE_NAME.findall(rest) if name not in KEYWORDS]


@cache
def exported_names() -> frozenset[str]:
    """Sample names of a real ``Metrics`` exposition, with one request observed so every family shows."""
    metrics = Metrics(["hockey", "space"], [path for _, path, _ in ROUTES])
    metrics.observe_request("/prediction", "POST", 200, 0.001)
    metrics.feedback.labels("1.0.0", "hockey", "space").inc()
    lines = metrics.exposition().decode().splitlines()
    return frozenset(line.split("{")[0].split(" ")[0] for line in lines if line and not line.startswith("#"))


def known_names() -> set[str]:
    return set(exported_names())


def test_the_dashboard_is_json_with_panels_and_queries() -> None:
    assert dashboard()["uid"]
    assert dashboard()["title"]
    assert len(queries()) >= 30


def test_the_variables_are_the_data_source_then_namespace_revision_and_pod() -> None:
    found = variables()
    assert list(found) == ["datasource", *FILTERS]
    datasource = found["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name in FILTERS:
        variable = found[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["includeAll"] is True
        # ".*" for All, so that series without the label (a Prometheus that scrapes the pod
        # without the operator's labels) still match.
        assert variable["allValue"] == ".*"
        query = variable["definition"]
        assert variable["query"]["query"] == query
        match = re.fullmatch(rf"label_values\(({VARIABLE_SOURCES})(\{{[^}}]*\}})?, (\w+)\)", query)
        assert match, query
        assert match[3] == name


def test_each_variable_is_narrowed_by_the_ones_before_it() -> None:
    names = list(FILTERS)
    for i, name in enumerate(names):
        ((_, matchers),) = selectors(variables()[name]["definition"]) or [("", {})]
        assert matchers == {before: ("=~", FILTERS[before]) for before in names[:i]}, name


def test_each_monitor_produces_the_revision_label() -> None:
    for path, (kind, endpoints) in MONITORS.items():
        (monitor,) = [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d and d["kind"] == kind]
        for endpoint in monitor["spec"][endpoints]:
            assert "revision" in {r["targetLabel"] for r in endpoint.get("relabelings", [])}, path


def test_every_range_is_the_rate_interval() -> None:
    for expr in queries():
        ranges = re.findall(r"\[([^\]]*)\]", expr)
        assert ranges == ["$__rate_interval"] * len(ranges), expr
        assert len(ranges) == len(re.findall(r"\b(?:rate|increase|irate|delta)\(", expr)), expr


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for panel in panels():
        if panel["type"] == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_selector_filters_by_namespace_revision_and_pod() -> None:
    for expr in queries():
        assert selectors(expr), expr
        assert bare_names(expr) == [], expr
        for name, matchers in selectors(expr):
            for label, variable in FILTERS.items():
                assert matchers.get(label) == ("=~", variable), f"{name} in {expr}"


def test_every_metric_is_one_the_service_exports() -> None:
    known = known_names()
    for expr in queries():
        for name, _ in selectors(expr):
            assert name in known, f"{name} in {expr}"


@pytest.mark.parametrize(
    "metric",
    [
        "textclf_rejected_requests_total",
        "textclf_validation_failures_total",
        "textclf_pool_worker_restarts_total",
        "textclf_gc_pause_seconds_bucket",
        "textclf_request_body_bytes",
        "textclf_request_body_budget_bytes",
        "textclf_predictions_total",
        "textclf_prediction_confidence_count",
        "textclf_text_tokens_count",
        "textclf_text_unknown_token_ratio_count",
        "textclf_label_drift_jensen_shannon",
        "textclf_label_drift_window_texts",
    ],
)
def test_the_operator_signals_have_panels(metric: str) -> None:
    used = {name for expr in queries() for name, _ in selectors(expr)}
    assert metric in used or metric.removesuffix("_count") + "_bucket" in used


def test_bucket_matchers_name_bucket_bounds_the_service_exports() -> None:
    """``le="0.5"`` must be a bucket of that histogram, or the ratio would always be empty."""
    bounds: dict[str, set[str]] = {}
    metrics = Metrics(["hockey"], [path for _, path, _ in ROUTES])
    for line in metrics.exposition().decode().splitlines():
        match = re.match(r'(\w+_bucket)\{.*le="([^"]+)"', line)
        if match:
            bounds.setdefault(match[1], set()).add(match[2])
    for expr in queries():
        for name, matchers in selectors(expr):
            if "le" not in matchers:
                continue
            operator, bound = matchers["le"]
            assert operator == "=", expr
            assert name in bounds, f"{name} is not a histogram the service exports"
            assert bound in bounds[name], f"{name} has no bucket {bound}"


def test_the_drift_gauge_warns_at_0_05_and_alerts_at_0_1() -> None:
    (gauge,) = [p for p in panels() if p["type"] == "gauge"]
    assert "textclf_label_drift_jensen_shannon" in gauge["targets"][0]["expr"]
    steps = gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 0.05, 0.1]


def test_panel_ids_are_unique_and_the_layout_has_no_overlap() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    boxes = []
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["y"] >= 0, panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        boxes.append((panel["title"], grid["x"], grid["y"], grid["x"] + grid["w"], grid["y"] + grid["h"]))
    for (a, ax0, ay0, ax1, ay1), (b, bx0, by0, bx1, by1) in itertools.combinations(boxes, 2):
        assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a!r} overlaps {b!r}"


def test_the_rollout_row_sets_live_accuracy_by_version_beside_latency_errors_confidence_and_drift() -> None:
    first_row = [p for p in panels() if p["gridPos"]["y"] < 25]
    assert first_row[0]["type"] == "row"
    grouped = {p["title"]: p["targets"][0]["expr"] for p in first_row[1:]}
    assert "by (model_version)" in grouped["Live accuracy by model version"]
    assert "by (model_version, predicted, actual)" in grouped["Live confusion by model version"]
    for signal in (
        "textclf_http_request_duration_seconds_bucket",
        "textclf_http_requests_total",
        "textclf_prediction_confidence_bucket",
        "textclf_label_drift_jensen_shannon",
    ):
        [expr] = [e for e in grouped.values() if signal in e]
        assert "by (revision" in expr, expr
