"""A real Prometheus scrapes the service and answers every query of the Grafana dashboard."""

from __future__ import annotations

import asyncio
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

from tests.helpers import ROOT, ServerProcess, free_port

DASHBOARD = ROOT / "knative/grafana-dashboard.json"
pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs Debian's prometheus (apt-get install prometheus); .ci/run installs it",
)


#: What Grafana puts in place of the dashboard's variables. The scrape here has no namespace,
#: revision or pod label (it reads the process directly, not through the Prometheus Operator),
#: and ".*", the variables' "All", also matches a label that is absent.
VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$revision": ".*", "$pod": ".*"}


def substituted(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a variable without a value here: {expr}"
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
    def __init__(self, target: str, folder: Path) -> None:
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: textclf\n    static_configs: [{{targets: ['{target}']}}]\n"
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
def prometheus(server: ServerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    prom = Prometheus(server.url.removeprefix("http://"), tmp_path)
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
