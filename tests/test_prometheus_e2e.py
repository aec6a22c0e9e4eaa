"""A real Prometheus scrapes the service and answers every query of the Grafana dashboard."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from bench.servers import ServerProcess, free_port
from tests.helpers import ROOT

DASHBOARD = ROOT / "knative/grafana-dashboard.json"
pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs Debian's prometheus (apt-get install prometheus); .ci/run installs it",
)


#: What Grafana puts in place of the dashboard's variables. The scrape here has no namespace,
#: revision or pod label (it reads the process directly, not through the Prometheus Operator),
#: and ".*", the variables' "All", also matches a label that is absent.
VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$revision": ".*", "$pod": ".*"}
KEY = "a feedback key for the tests, 32 bytes or more"


def substituted(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    # "$1" is label_replace's reference to its regular expression's group, not a variable.
    assert "$" not in expr.replace('"$1"', ""), f"a variable without a value here: {expr}"
    return expr


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries() -> list[str]:
    return [substituted(t["expr"]) for panel in dashboard()["panels"] for t in panel.get("targets", [])]


def variable_selectors() -> dict[str, str]:
    """Each ``label_values(selector, label)`` variable as label -> selector, substituted."""
    found = {}
    for variable in dashboard()["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable.get("definition", ""))
        if match:
            found[match[2]] = substituted(match[1])
    return found


class Prometheus:
    def __init__(self, targets: dict[str, dict[str, str]], folder: Path) -> None:
        """Scrape each ``host:port`` of ``targets`` every second, with the labels given for it (what
        the Prometheus Operator and the PodMonitor's relabelling add in a cluster)."""
        config = folder / "prometheus.yml"
        static = ", ".join(f"{{targets: ['{t}'], labels: {json.dumps(labels)}}}" for t, labels in targets.items())
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: textclf\n    static_configs: [{static}]\n"
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def api(self, path: str, **params: str) -> Any:
        """GET an /api/v1 endpoint; a query Prometheus cannot parse or evaluate fails here."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code in (400, 422):  # bad_data (does not parse), execution errors
                raise AssertionError(f"{params}: {error.code} {error.read().decode()}") from None
            raise  # e.g. 503 while Prometheus starts: an OSError, which wait_for retries
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def wait_for(self, expr: str, within: float = 30.0) -> list[dict[str, Any]]:
        """Poll until the query returns a finite value (scrapes arrive once a second)."""
        deadline = time.monotonic() + within
        while True:
            try:
                result = self.query(expr)
                if result and all(math.isfinite(float(r["value"][1])) for r in result):
                    return result
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no finite value for {expr!r} within {within} s")
            time.sleep(0.5)

    def stop(self) -> str:
        self.proc.terminate()
        _, errors = self.proc.communicate(timeout=30)
        return errors


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    """A real server process issuing prediction ids, ready, stopped after the test."""
    srv = ServerProcess(env={"FEEDBACK_KEY": KEY})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def prometheus(server: ServerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    prom = Prometheus({server.url.removeprefix("http://"): {}}, tmp_path)
    try:
        yield prom
    finally:
        prom.stop()


async def send_traffic(url: str, seconds: float) -> None:
    texts = ["the goalie and the puck", "nasa orbit", "pgp key", "resistor voltage", "the senate", "an inning"]
    async with ClientSession() as http:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            body = {"text": texts[i % len(texts)]} if i % 10 else {"text": ""}  # some 405s too
            async with http.post(url + "/prediction", json=body) as response:
                answer = await response.json()
            if i % 10 == 1:  # feedback on some, one of them refused
                feedback = {"prediction_id": answer["prediction_id"][: -1 if i % 20 == 1 else None], "label": "space"}
                async with http.post(url + "/feedback", json=feedback) as response:
                    await response.read()
            i += 1
            await asyncio.sleep(0.005)


def test_prometheus_scrapes_the_service_and_the_dashboard_queries_answer(
    server: ServerProcess, prometheus: Prometheus
) -> None:
    [up] = prometheus.wait_for('up{job="textclf"}')
    assert up["value"][1] == "1"
    asyncio.run(send_traffic(server.url, 4.0))
    queries = dashboard_queries()
    assert len(queries) >= 30
    # The request-rate panel answers with the traffic just sent.
    (by_route,) = [q for q in queries if q.startswith("sum by (route) (rate(textclf_http_requests_total{")]
    rates = {r["metric"].get("route"): float(r["value"][1]) for r in prometheus.wait_for(by_route)}
    assert rates.get("/prediction", 0.0) > 0, rates
    scraped = set(prometheus.api("label/__name__/values"))
    for expr in queries:
        result = prometheus.query(expr)  # parses and evaluates, or fails here
        missing = set(re.findall(r"\b(textclf_\w+)\{", expr)) - scraped
        assert not missing, f"{expr} asks for metrics the service does not export: {missing}"
        assert result, f"no series from {expr}"
    for label, selector in variable_selectors().items():
        assert prometheus.api("series", **{"match[]": selector}), f"no series for the {label} variable: {selector}"
        assert isinstance(prometheus.api(f"label/{label}/values", **{"match[]": selector}), list)


def panel_query(title: str) -> str:
    """The (first) query of the dashboard panel titled ``title``, its variables substituted."""
    [panel] = [p for p in dashboard()["panels"] if p["title"] == title]
    return substituted(panel["targets"][0]["expr"])


async def predict_and_feed_back(urls: list[str], labelled: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Each text predicted by the pods in turn (a traffic split), and its true label fed back to the
    next pod (any pod checks any id); ``(model version, predicted, actual)`` of each."""
    counted = []
    async with ClientSession() as http:
        for i, (text, actual) in enumerate(labelled):
            async with http.post(urls[i % len(urls)] + "/prediction", json={"text": text}) as response:
                version = response.headers["X-Model-Version"]
                answer = await response.json()
            feedback = {"prediction_id": answer["prediction_id"], "label": actual}
            async with http.post(urls[(i + 1) % len(urls)] + "/feedback", json=feedback) as response:
                assert response.status == 200, await response.text()
            counted.append((version, answer["label"], actual))
    return counted


def test_two_revisions_are_told_apart_and_live_accuracy_is_what_the_feedback_says(tmp_path: Path) -> None:
    """A canary as Knative runs it: two revisions serving two model versions; Prometheus labels each
    pod's series with its revision (as the PodMonitor does), and the dashboard's live accuracy by
    model version equals the accuracy of the labels fed back, computed here."""
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    info = json.loads((ROOT / "model/model.json").read_text())
    (candidate / "model.onnx").write_bytes((ROOT / "model/model.onnx").read_bytes())
    (candidate / "model.json").write_text(json.dumps(info | {"version": info["version"] + "-candidate"}))
    revisions = {"newsgroups-classifier-00001": ROOT / "model", "newsgroups-classifier-00002": candidate}
    servers = [
        ServerProcess(env={"FEEDBACK_KEY": KEY, "K_REVISION": revision, "MODEL_DIR": str(folder)})
        for revision, folder in revisions.items()
    ]
    prometheus = None
    try:
        for server in servers:
            server.wait_ready()
        targets = {
            s.url.removeprefix("http://"): {"namespace": "default", "revision": r, "pod": f"{r}-deployment-0"}
            for s, r in zip(servers, revisions, strict=True)
        }
        (tmp_path / "prometheus").mkdir()
        prometheus = Prometheus(targets, tmp_path / "prometheus")
        prometheus.wait_for('count(up{job="textclf"} == 1) == 2')

        with gzip.open(ROOT / "data/test.jsonl.gz", "rt") as lines:
            test = [json.loads(line) for line in itertools.islice(lines, 240)]
        counted = asyncio.run(predict_and_feed_back([s.url for s in servers], [(t["text"], t["label"]) for t in test]))
        expected = {}
        for version in {v for v, _, _ in counted}:
            mine = [(p, a) for v, p, a in counted if v == version]
            expected[version] = sum(p == a for p, a in mine) / len(mine)
        assert len(expected) == 2

        prometheus.wait_for(f"sum(textclf_feedback_total) == {len(counted)}")
        accuracy = {
            r["metric"]["model_version"]: float(r["value"][1])
            for r in prometheus.query(panel_query("Live accuracy by model version"))
        }
        confusion = {
            (r["metric"]["model_version"], r["metric"]["predicted"], r["metric"]["actual"]): float(r["value"][1])
            for r in prometheus.query(panel_query("Live confusion by model version"))
        }
        by_revision = {
            r["metric"]["revision"]: float(r["value"][1])
            for r in prometheus.query('sum by (revision) (textclf_http_requests_total{route="/prediction"})')
        }
        versions = {r["metric"]["revision"]: r["metric"]["version"] for r in prometheus.query("textclf_model_info")}
        print(f"live accuracy {accuracy}, computed {expected}; predictions by revision {by_revision}")
        assert accuracy == pytest.approx(expected, abs=1e-9)
        assert {k: v for k, v in confusion.items() if v} == {key: float(counted.count(key)) for key in set(counted)}
        assert by_revision == {r: len(counted) / 2 for r in revisions}
        assert versions == {
            "newsgroups-classifier-00001": info["version"],
            "newsgroups-classifier-00002": info["version"] + "-candidate",
        }
    finally:
        if prometheus is not None:
            prometheus.stop()
        for server in servers:
            server.stop()
