"""schemathesis against the live service, from each document it serves: /openapi.json (Swagger 2.0)
and /openapi3.json (OpenAPI 3.0).

Every operation, every check, its coverage, fuzzing and stateful phases, in two runs a document:
one generating only valid requests (``positive``: each must be answered as documented and accepted),
one generating only invalid ones (``negative``: each must be rejected with a 4xx, never a 5xx).
What the V2 infer request's schema cannot say (its shape counts its texts, no output is named
twice) the valid requests keep through ``schemathesis_hooks.py``; nothing is left out.
E2E_EXAMPLES sets the examples per operation and phase (300 by default), E2E_SEED the seed
(random by default; a failure prints the seed and the command that reproduces it).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.servers import ServerProcess

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("E2E_EXAMPLES", "300"))
#: Operations whose only input is the request body (and a boolean flag): these get the examples.
BODY_OPERATIONS = ("POST /prediction", "POST /predictions", "POST /")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
DOCUMENTS = ("/openapi.json", "/openapi3.json")
OPERATIONS = 18  # every documented operation: 9 of the service's own (POST /: events), 9 of V2
RUN_TIMEOUT = 600


def schemathesis(url: str, mode: str, seed: int, reports: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", url,
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--mode", mode,
        "--max-examples", str(EXAMPLES),
        "--seed", str(seed),
        # NOTE: one worker: Python 3.11.7's ast.parse is not thread-safe, and hypothesis calls it
        # while describing strategies ("AST constructor recursion depth mismatch" with -w 2).
        "--workers", "1",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--report", "json,ndjson",
        "--report-dir", str(reports),
        "--no-color",
    ]  # fmt: skip
    # NOTE: run where its crash cache (.schemathesis/, for `st replay`) lands beside the reports.
    env = os.environ | {"SCHEMATHESIS_HOOKS": str(HOOKS)}
    result = subprocess.run(command, cwd=reports.parent, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return result, [f"SCHEMATHESIS_HOOKS={HOOKS}", *command]


def load_reports(reports: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [summary] = reports.glob("json-*.json")
    [events] = reports.glob("ndjson-*.ndjson")
    return json.loads(summary.read_text()), [json.loads(line) for line in events.read_text().splitlines()]


def cases_by_operation(events: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """(operation, phase, generation mode) -> test cases sent."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for event in events:
        finished = event.get("ScenarioFinished")
        if finished:
            recorder = finished["recorder"]
            for case in recorder.get("cases", {}).values():
                mode = case["value"]["meta"]["generation"]["mode"]
                counts[(recorder["label"], finished["phase"], mode)] += 1
    return counts


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_nothing(live: ServerProcess, tmp_path: Path, mode: str, document: str) -> None:
    seed = int(os.environ.get("E2E_SEED", random.randrange(2**32)))
    result, command = schemathesis(live.url + document, mode, seed, tmp_path / "reports")
    again = f"reproduce with: E2E_SEED={seed} (or: {' '.join(command)})"
    assert result.returncode == 0, f"{result.stdout[-20000:]}\n{result.stderr[-5000:]}\n{again}"
    summary, events = load_reports(tmp_path / "reports")
    tested, counts = summary["operations"]["tested"], summary["test_cases"]
    passed = counts["generated"] - counts["with_failures"] - counts["errored"]
    print(f"{document} {mode}: {tested} operations, {counts['generated']} test cases, {passed} passed (seed {seed})")

    assert summary["stop_reason"] == "completed", again
    assert summary["complete"], again
    assert summary["failures"] == [], again
    assert summary["errors"] == [], again
    assert summary["operations"]["tested"] == OPERATIONS, summary["operations"]
    assert summary["test_cases"]["with_failures"] == summary["test_cases"]["errored"] == 0
    # e.g. validation_mismatch (the schema and the service disagree on what is valid), low_valid_rate
    assert {kind: found for kind, found in summary["warnings"].items() if found} == {}, again

    phases = summary["phases"]
    assert phases["coverage"]["status"] == "success", phases
    assert phases["fuzzing"]["status"] == "success", phases
    # NOTE: schemathesis links the V2 metadata's model name to the operations that take it in their path.
    assert phases["stateful"]["status"] == "success", phases

    cases = cases_by_operation(events)
    for operation in BODY_OPERATIONS:
        fuzzed = cases[(operation, "fuzzing", mode)]
        assert fuzzed >= EXAMPLES, f"{operation}: {fuzzed} {mode} cases fuzzed, wanted {EXAMPLES}"
        assert cases[(operation, "coverage", mode)] > 0, operation
    # NOTE: schemathesis runs out of distinct invalid inference requests before EXAMPLES.
    wanted = EXAMPLES if mode == "positive" else EXAMPLES // 4
    infer = cases[("POST /v2/models/{name}/infer", "fuzzing", mode)]
    assert infer >= wanted, f"V2 infer: {infer} {mode} cases fuzzed, wanted {wanted}"
    for operation in ("GET /model", "GET /healthz", "GET /readyz", "GET /metrics", "GET /v2/models/{name}"):
        assert sum(n for (op, _, m), n in cases.items() if op == operation and m == mode) > 0, operation
