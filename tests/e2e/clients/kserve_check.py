"""Drive the service with KServe's REST client (Open Inference Protocol); print what it saw as JSON.

Run by tests/e2e/test_inference_clients.py with .venv/clients/bin/python:
``kserve_check.py BASE_URL MODEL TEXTS.json``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


async def main(base: str, model: str, texts: list[str]) -> None:
    seen: dict[str, Any] = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=30)) as client:
        seen["live"] = await client.is_server_live(base)
        seen["ready"] = await client.is_server_ready(base)
        seen["model_ready"] = await client.is_model_ready(base, model)
        labels: list[str] = []
        for start in range(0, len(texts), 64):
            tensor = InferInput(name="text", shape=[len(texts[start : start + 64])], datatype="BYTES")
            array = np.array([t.encode() for t in texts[start : start + 64]], dtype=object)
            tensor.set_data_from_numpy(array, binary_data=True)
            request = InferRequest(model_name=model, infer_inputs=[tensor], request_id=f"kserve-{start}")
            response = await client.infer(base, request, model_name=model)
            assert response.id == f"kserve-{start}", response.id
            [label] = [o for o in response.outputs if o.name == "label"]
            labels += [x.decode() if isinstance(x, bytes) else x for x in label.as_numpy().tolist()]
        seen["binary_labels"] = labels
        tensor = InferInput(name="text", shape=[2], datatype="BYTES", data=texts[:2])
        request = InferRequest(
            model_name=model, infer_inputs=[tensor], request_outputs=[RequestedOutput("probabilities")]
        )
        response = await client.infer(base, request, model_name=model)
        seen["json_outputs"] = [(o.name, o.datatype, list(o.shape)) for o in response.outputs]
        seen["json_probabilities"] = response.outputs[0].as_numpy().tolist()
        try:
            bad = InferInput(name="text", shape=[3], datatype="BYTES", data=texts[:1])
            await client.infer(base, InferRequest(model_name=model, infer_inputs=[bad]), model_name=model)
            seen["shape_mismatch"] = "no error"
        except httpx.HTTPStatusError as exc:
            seen["shape_mismatch"] = {"status": exc.response.status_code, "body": exc.response.json()}
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text())))
