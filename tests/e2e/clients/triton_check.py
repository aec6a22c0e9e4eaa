"""Drive the service with tritonclient's HTTP client; print what it saw as one JSON object.

Run by tests/e2e/test_inference_clients.py with .venv/clients/bin/python:
``triton_check.py HOST:PORT MODEL TEXTS.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException


def texts_input(texts: list[str], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=binary)
    return tensor


def error_of(call: Any) -> dict[str, Any]:
    try:
        call()
    except InferenceServerException as exc:
        return {"status": exc.status(), "message": exc.message()}
    return {"status": None, "message": "no error"}


def main(url: str, model: str, texts_file: str) -> None:
    texts = json.loads(Path(texts_file).read_text())
    client = triton.InferenceServerClient(url)
    seen: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "server_metadata": client.get_server_metadata(),
        "model_metadata": client.get_model_metadata(model),
    }
    labels: list[str] = []
    for start in range(0, len(texts), 64):  # the defaults: binary tensors both ways
        result = client.infer(model, [texts_input(texts[start : start + 64], binary=True)])
        labels += [label.decode() for label in result.as_numpy("label")]
        probabilities = result.as_numpy("probabilities")
        assert probabilities.dtype == np.float32
        assert probabilities.shape == (len(texts[start : start + 64]), 6)
    seen["binary_labels"] = labels
    seen["binary_rows_sum_to_one"] = bool(np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5))
    result = client.infer(
        model,
        [texts_input(texts[:3], binary=False)],
        outputs=[triton.InferRequestedOutput("label", binary_data=False)],
        request_id="triton-json",
    )
    seen["json_response"] = result.get_response()
    seen["unknown_model"] = error_of(lambda: client.infer("no-such-model", [texts_input(texts[:1], binary=True)]))
    seen["empty_text"] = error_of(lambda: client.infer(model, [texts_input(["   "], binary=False)]))
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
