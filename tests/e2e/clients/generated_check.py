"""Call the live service through the client openapi-python-client generated from its openapi3.json.

Run by tests/e2e/test_generated_client.py with .venv/clients/bin/python, the generated package
(``client``) on PYTHONPATH: ``generated_check.py BASE_URL``. Prints what it saw as one JSON object.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
from client import Client
from client.api.open_inference_protocol import v2_infer, v2_server_ready
from client.api.prediction import prediction, predictions
from client.models import ApiRequest, ApiResponse, BatchRequest, Error, V2InferInput, V2InferRequest

TENSOR = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["orbit"]}


def as_text(request: httpx.Request) -> None:
    """An event hook that relabels the body, as a misconfigured proxy or caller would."""
    request.headers["Content-Type"] = "text/plain"


def main(base: str) -> None:
    seen: dict[str, Any] = {}
    with Client(base_url=base) as api:
        ok = prediction.sync_detailed(client=api, body=ApiRequest(text="the shuttle reached orbit"))
        assert isinstance(ok.parsed, ApiResponse), ok
        seen["200"] = {"status": ok.status_code, "label": ok.parsed.label.value}
        batch = predictions.sync_detailed(client=api, body=BatchRequest(texts=["pgp keys", "the goalie"]))
        seen["batch"] = {"status": batch.status_code, "labels": [x.value for x in batch.parsed.labels]}
        bad = prediction.sync_detailed(client=api, body=ApiRequest(text="   "))
        assert isinstance(bad.parsed, Error), bad
        seen["405"] = {"status": bad.status_code, "error": bad.parsed.error, "detail": bad.parsed.detail}
        v2 = v2_infer.sync_detailed(
            "newsgroups-topic",
            client=api,
            body=V2InferRequest(inputs=[V2InferInput.from_dict(TENSOR)]),
        )
        seen["v2"] = {"status": v2.status_code, "outputs": [o.name for o in v2.parsed.outputs]}
        seen["v2_ready"] = v2_server_ready.sync_detailed(client=api).parsed.ready
    # The wrong media type, as a misconfigured caller of the same generated client would send it.
    with Client(base_url=base, httpx_args={"event_hooks": {"request": [as_text]}}) as api:
        wrong = prediction.sync_detailed(client=api, body=ApiRequest(text="orbit"))
        assert isinstance(wrong.parsed, Error), wrong
        seen["415"] = {"status": wrong.status_code, "error": wrong.parsed.error, "detail": wrong.parsed.detail}
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
