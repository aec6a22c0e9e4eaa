"""A real Prometheus scrapes the service and answers every query of the Grafana dashboard."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
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


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


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

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

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
    assert len(queries) >= 12
    for expr in queries:
        result = prometheus.wait_for(expr)
        assert result, expr
    rate = prometheus.wait_for('sum(rate(textclf_http_requests_total{route="/prediction"}[1m]))')
    assert float(rate[0]["value"][1]) > 0
