"""The Open Inference Protocol (KServe V2, REST) routes, as the specification and its binary extension say."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from function.api.binary_tensors import HEADER_LENGTH
from function.settings import Settings
from tests.helpers import ROOT, split_texts

INFO = json.loads((ROOT / "model" / "model.json").read_bytes())
MODEL = f"/v2/models/{INFO['name']}"
JSON = {"Content-Type": "application/json"}


def text_tensor(texts: list[Any], shape: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": "text",
        "datatype": "BYTES",
        "shape": [len(texts)] if shape is None else shape,
        "data": texts,
    } | extra


def binary_bytes(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


async def infer(client: TestClient, body: dict[str, Any], path: str = MODEL) -> tuple[int, dict[str, Any]]:
    response = await client.post(path + "/infer", json=body)
    return response.status, await response.json()


async def predictions(client: TestClient, texts: list[str]) -> dict[str, Any]:
    response = await client.post("/predictions?scores=true", json={"texts": texts})
    assert response.status == 200
    return dict(await response.json())


async def test_server_metadata_health_and_model_readiness(client: TestClient) -> None:
    server = await (await client.get("/v2")).json()
    assert set(server) == {"name", "version", "extensions"}
    assert "binary_tensor_data" in server["extensions"]
    assert await (await client.get("/v2/health/live")).json() == {"live": True}
    assert await (await client.get("/v2/health/ready")).json() == {"ready": True}
    for path in (MODEL, f"{MODEL}/versions/{INFO['version']}"):
        response = await client.get(path + "/ready")
        assert response.status == 200
        assert await response.json() == {"name": INFO["name"], "ready": True}


async def test_model_metadata_names_the_tensors_and_labels(client: TestClient) -> None:
    metadata = await (await client.get(MODEL)).json()
    assert metadata == await (await client.get(f"{MODEL}/versions/{INFO['version']}")).json()
    assert metadata["name"] == INFO["name"]
    assert metadata["versions"] == [INFO["version"]]
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(INFO["labels"])]}
    assert metadata["parameters"]["labels"] == INFO["labels"]


@pytest.mark.parametrize(
    "path", ["/v2/models/nope", "/v2/models/nope/ready", f"{MODEL}/versions/0.0.0", f"{MODEL}/versions/0.0.0/ready"]
)
async def test_an_unknown_model_or_version_is_404_in_the_protocols_error_shape(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    body = await response.json()
    assert set(body) == {"error"}
    assert INFO["name"] in body["error"] or INFO["version"] in body["error"]


async def test_infer_gives_the_labels_and_probabilities_of_prediction(client: TestClient) -> None:
    texts = split_texts()[:40]
    status, body = await infer(client, {"id": "req-1", "inputs": [text_tensor(texts)]})
    assert status == 200
    assert body["id"] == "req-1"
    assert (body["model_name"], body["model_version"]) == (INFO["name"], INFO["version"])
    label, probabilities = body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [40])
    assert (probabilities["name"], probabilities["datatype"]) == ("probabilities", "FP32")
    assert probabilities["shape"] == [40, len(INFO["labels"])]
    expected = await predictions(client, texts)
    assert label["data"] == expected["labels"]
    rows = [probabilities["data"][i * 6 : (i + 1) * 6] for i in range(40)]
    assert rows == [pytest.approx([s[name] for name in INFO["labels"]], abs=1e-7) for s in expected["scores"]]


async def test_only_the_requested_outputs_come_back(client: TestClient) -> None:
    status, body = await infer(client, {"inputs": [text_tensor(["orbit"])], "outputs": [{"name": "probabilities"}]})
    assert status == 200
    assert "id" not in body
    assert [o["name"] for o in body["outputs"]] == ["probabilities"]


async def test_a_column_tensor_and_nested_data_are_accepted(client: TestClient) -> None:
    status, body = await infer(client, {"inputs": [text_tensor([["orbit"], ["goalie"]], shape=[2, 1])]})
    assert status == 200
    assert body["outputs"][0]["data"] == (await predictions(client, ["orbit", "goalie"]))["labels"]


async def test_binary_tensors_both_ways(client: TestClient) -> None:
    texts = ["the shuttle reached orbit", "a new encryption key", "der Torwart hielt — ÄÖÜ"]
    blob = binary_bytes([t.encode() for t in texts])
    tensor = {"name": "text", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": len(blob)}}
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    response = await client.post(
        MODEL + "/infer",
        data=header + blob,
        headers={"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )
    assert response.status == 200
    raw = await response.read()
    cut = int(response.headers[HEADER_LENGTH])
    head = json.loads(raw[:cut])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    labels_blob, probabilities_blob = raw[cut : cut + sizes[0]], raw[cut + sizes[0] :]
    assert len(probabilities_blob) == sizes[1] == 3 * len(INFO["labels"]) * 4
    assert labels_blob == binary_bytes([x.encode() for x in (await predictions(client, texts))["labels"]])
    values = struct.unpack(f"<{3 * len(INFO['labels'])}f", probabilities_blob)
    assert sum(values) == pytest.approx(3.0, abs=1e-5)


BAD_REQUESTS = {
    "not an object": ([], "not_object"),
    "no inputs": ({}, "bad_tensor"),
    "two inputs": ({"inputs": [text_tensor(["a"]), text_tensor(["b"])]}, "bad_tensor"),
    "wrong input name": ({"inputs": [text_tensor(["a"]) | {"name": "input_0"}]}, "bad_tensor"),
    "wrong datatype": ({"inputs": [text_tensor(["a"]) | {"datatype": "FP32"}]}, "bad_tensor"),
    "shape and data disagree": ({"inputs": [text_tensor(["a"], shape=[3])]}, "bad_tensor"),
    "shape of three dimensions": ({"inputs": [text_tensor(["a"], shape=[1, 1, 1])]}, "bad_tensor"),
    "no data": ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]}, "missing_field"),
    "an empty text": ({"inputs": [text_tensor(["  "])]}, "empty_text"),
    "a number for a text": ({"inputs": [text_tensor([7])]}, "wrong_type"),
    "an unknown output": ({"inputs": [text_tensor(["a"])], "outputs": [{"name": "logits"}]}, "bad_tensor"),
    "an output named twice": (
        {"inputs": [text_tensor(["a"])], "outputs": [{"name": "label"}, {"name": "label"}]},
        "bad_tensor",
    ),
    "a non-boolean binary flag": (
        {"inputs": [text_tensor(["a"])], "parameters": {"binary_data_output": 1}},
        "wrong_type",
    ),
    "an id that is not a string": ({"id": 5, "inputs": [text_tensor(["a"])]}, "wrong_type"),
    "too many texts": ({"inputs": [text_tensor(["a"] * (Settings.max_batch_items + 1))]}, "batch_size"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_an_invalid_request_is_400_with_the_protocols_error_and_counted(client: TestClient, case: str) -> None:
    body, reason = BAD_REQUESTS[case]
    status, answer = await infer(client, body)
    assert status == 400, answer
    assert set(answer) == {"error"}
    assert answer["error"]
    metrics = (await (await client.get("/metrics")).read()).decode()
    assert f'textclf_validation_failures_total{{reason="{reason}"}} 1.0' in metrics


async def test_not_json_and_the_wrong_media_type(client: TestClient) -> None:
    response = await client.post(MODEL + "/infer", data=b"{", headers=JSON)
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]
    response = await client.post(MODEL + "/infer", data=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert "Content-Type: application/json" in (await response.json())["error"]


async def test_a_header_length_beyond_the_body_is_400(client: TestClient) -> None:
    response = await client.post(
        MODEL + "/infer", data=b"{}", headers={"Content-Type": "application/octet-stream", HEADER_LENGTH: "99"}
    )
    assert response.status == 400


@pytest.mark.parametrize("settings", [Settings(workers=1, max_body_bytes=1000)])
async def test_a_body_over_the_limit_is_413_in_the_protocols_shape(client: TestClient) -> None:
    response = await client.post(MODEL + "/infer", data=b" " * 1001, headers=JSON)
    assert response.status == 413
    assert set(await response.json()) == {"error"}


async def test_infer_counts_in_the_same_metrics_as_prediction(client: TestClient) -> None:
    status, _ = await infer(client, {"inputs": [text_tensor(["orbit", "goalie", "pgp"])]})
    assert status == 200
    metrics = (await (await client.get("/metrics")).read()).decode()
    counted = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("textclf_predictions_total{")
    )
    assert counted == 3
    assert 'route="/v2/models/{name}/infer"' in metrics
