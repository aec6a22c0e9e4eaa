"""The Open Inference Protocol (KServe V2) with the clients platform teams use: tritonclient and KServe's.

Each client runs in its own virtual environment (``.venv/clients``, built by ``make e2e``) as a
separate program against the shared live server, and prints what it saw; the labels it got must
be the ones ``/predictions`` gives for the same test texts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.servers import ServerProcess
from tests.e2e.helpers import CLIENT_SCRIPTS, JSON, clients_bin, http
from tests.helpers import split_texts

pytestmark = pytest.mark.e2e

TEXTS = 200


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v2") / "texts.json"
    path.write_text(json.dumps(split_texts()[:TEXTS]))
    return path


@pytest.fixture(scope="module")
def expected(live: ServerProcess, texts: Path) -> dict[str, Any]:
    """What /predictions answers for the same texts (labels and probabilities)."""
    answer = http("POST", live.url + "/predictions?scores=true", texts.read_bytes().join([b'{"texts":', b"}"]), JSON)
    assert answer.status == 200
    return dict(json.loads(answer.body))


@pytest.fixture(scope="module")
def model(live: ServerProcess) -> dict[str, Any]:
    return dict(json.loads(http("GET", live.url + "/model").body))


def run_client(script: str, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(clients_bin() / "python"), str(CLIENT_SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return dict(json.loads(result.stdout))


def test_tritonclient_sees_a_live_ready_model_and_gets_the_same_labels(
    live: ServerProcess, texts: Path, expected: dict[str, Any], model: dict[str, Any]
) -> None:
    seen = run_client("triton_check.py", live.url.removeprefix("http://"), model["name"], str(texts))

    assert seen["live"] is seen["ready"] is seen["model_ready"] is True
    assert "binary_tensor_data" in seen["server_metadata"]["extensions"]
    metadata = seen["model_metadata"]
    assert metadata["name"] == model["name"]
    assert metadata["versions"] == [model["version"]]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP32", [-1, len(model["labels"])]),
    ]
    assert metadata["parameters"]["labels"] == model["labels"]

    assert seen["binary_labels"] == expected["labels"]
    assert seen["binary_rows_sum_to_one"]
    response = seen["json_response"]
    assert response["id"] == "triton-json"
    assert response["model_name"] == model["name"]
    assert [o["name"] for o in response["outputs"]] == ["label"]  # only what was asked for
    assert response["outputs"][0]["data"] == expected["labels"][:3]

    assert seen["unknown_model"]["status"] == "404"
    assert model["name"] in seen["unknown_model"]["message"]
    assert seen["empty_text"]["status"] == "400"
    assert "empty" in seen["empty_text"]["message"]


def test_kserve_client_sees_a_live_ready_model_and_gets_the_same_labels(
    live: ServerProcess, texts: Path, expected: dict[str, Any], model: dict[str, Any]
) -> None:
    seen = run_client("kserve_check.py", live.url, model["name"], str(texts))

    assert seen["live"] is seen["ready"] is seen["model_ready"] is True
    assert seen["binary_labels"] == expected["labels"]
    assert seen["json_outputs"] == [["probabilities", "FP32", [2, len(model["labels"])]]]
    for row, scores in zip(seen["json_probabilities"], expected["scores"][:2], strict=True):
        assert row == pytest.approx([scores[label] for label in model["labels"]], abs=1e-6)
    assert seen["shape_mismatch"]["status"] == 400
    assert set(seen["shape_mismatch"]["body"]) == {"error"}
