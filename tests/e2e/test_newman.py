"""examples/postman_collection.json: well-formed, complete, and every assertion in it passes (newman).

newman comes from tests/e2e/package.json (pinned, with its lock file): ``make e2e`` installs it
with ``npm ci --prefix tests/e2e``; this test does the same when it is missing and npm is there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.servers import ServerProcess
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

COLLECTION = ROOT / "examples/postman_collection.json"
NODE_PROJECT = ROOT / "tests/e2e"
NEWMAN = NODE_PROJECT / "node_modules/.bin/newman"
SCHEMA_V21 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"


def requests_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests of a collection, folders flattened."""
    found = []
    for item in items:
        found += requests_of(item["item"]) if "item" in item else [item]
    return found


@pytest.fixture(scope="module")
def collection() -> dict[str, Any]:
    return dict(json.loads(COLLECTION.read_text()))


@pytest.fixture(scope="module")
def newman() -> Path:
    if not NEWMAN.exists():
        if shutil.which("node") is None or shutil.which("npm") is None:
            pytest.skip("node and npm are not installed (CI installs Debian's nodejs and npm)")
        subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_PROJECT), "--no-audit", "--no-fund"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return NEWMAN


def test_collection_is_postman_v2_1_with_a_base_url_variable(collection: dict[str, Any]) -> None:
    assert collection["info"]["schema"] == SCHEMA_V21
    assert {v["key"]: v["value"] for v in collection["variable"]} == {"baseUrl": "http://localhost:8080"}
    for item in requests_of(collection["item"]):
        assert item["request"]["url"]["raw"].startswith("{{baseUrl}}/"), item["name"]


def test_every_request_has_tests_of_status_and_body(collection: dict[str, Any]) -> None:
    for item in requests_of(collection["item"]):
        scripts = ["\n".join(e["script"]["exec"]) for e in item.get("event", []) if e["listen"] == "test"]
        assert scripts, f"{item['name']}: no test script"
        script = "\n".join(scripts)
        assert "pm.response.to.have.status(" in script, item["name"]
        assert "pm.test(" in script, item["name"]
        assert "pm.expect(" in script, item["name"]


def test_collection_covers_every_operation_and_the_main_errors(
    collection: dict[str, Any], api_document: dict[str, Any]
) -> None:
    requests = requests_of(collection["item"])
    sent = {(i["request"]["method"], "/" + "/".join(i["request"]["url"]["path"])) for i in requests}
    model = json.loads((ROOT / "model" / "model.json").read_bytes())
    operations = {
        (m.upper(), p.replace("{name}", model["name"]).replace("{version}", model["version"]))
        for p, ops in api_document["paths"].items()
        for m in ops
    }
    assert operations | {("GET", "/openapi.json"), ("GET", "/docs")} <= sent
    statuses = {
        int(line.split("status(")[1].split(")")[0])
        for i in requests
        for e in i["event"]
        for line in e["script"]["exec"]
        if "to.have.status(" in line
    }
    assert {200, 404, 405, 413, 415} <= statuses


def test_newman_runs_the_collection_without_a_failed_assertion(
    live: ServerProcess, newman: Path, collection: dict[str, Any], tmp_path: Path
) -> None:
    report = tmp_path / "newman.json"
    result = subprocess.run(
        [
            str(newman), "run", str(COLLECTION),
            "--env-var", f"baseUrl={live.url}",
            "--reporters", "cli,json",
            "--reporter-json-export", str(report),
            "--timeout-request", "15000",
            "--color", "off",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    run = json.loads(report.read_text())["run"]
    assert run["failures"] == [], json.dumps(run["failures"], indent=2)[:5000]
    stats = run["stats"]
    expected = len(requests_of(collection["item"]))
    assert stats["requests"] == {"total": expected, "pending": 0, "failed": 0}
    assert stats["testScripts"] == {"total": expected, "pending": 0, "failed": 0}
    assert stats["assertions"]["failed"] == 0
    assert stats["assertions"]["total"] >= 3 * expected  # status, body shape, request id: at least
    executed = [e for e in run["executions"] if e.get("response")]
    assert len(executed) == expected
    assert all(e["assertions"] and not any("error" in a for a in e["assertions"]) for e in executed)
