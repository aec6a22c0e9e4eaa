"""The HTTP contract: the challenge's POST /prediction and everything the service adds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from function.api.state import BODIES
from function.settings import Settings
from function.state import MODEL_INFO, SETTINGS
from tests.helpers import ROOT

JSON = {"Content-Type": "application/json"}
LABELS = {"baseball", "cryptography", "electronics", "hockey", "politics", "space"}


async def post(client: TestClient, path: str, body: object, headers: dict[str, str] | None = None) -> ClientResponse:
    return await client.post(path, data=json.dumps(body), headers=JSON | (headers or {}))


async def test_prediction_answers_exactly_a_label(client: TestClient) -> None:
    response = await post(client, "/prediction", {"text": "The goalie stopped the puck in overtime."})
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"label": "hockey"}


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("NASA launched the shuttle into orbit around the moon", "space"),
        ("The pitcher threw a no-hitter and the Yankees won", "baseball"),
        ("PGP encryption keys and the clipper chip escrow", "cryptography"),
        ("The circuit needs a resistor and a capacitor on the op-amp", "electronics"),
        ("The senate voted on the gun control bill and the president", "politics"),
    ],
)
async def test_prediction_labels_clear_examples(client: TestClient, text: str, label: str) -> None:
    response = await post(client, "/prediction", {"text": text})
    assert (await response.json())["label"] == label


async def test_unknown_fields_are_ignored(client: TestClient) -> None:
    response = await post(client, "/prediction", {"text": "orbit of the space station", "lang": "en", "x": [1]})
    assert response.status == 200
    assert await response.json() == {"label": "space"}


async def test_scores_are_probabilities_of_every_label(client: TestClient) -> None:
    response = await post(client, "/prediction?scores=true", {"text": "encryption of the session key"})
    body = await response.json()
    assert set(body) == {"label", "scores"}
    assert set(body["scores"]) == LABELS
    assert sum(body["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["label"] == max(body["scores"], key=body["scores"].get)


async def test_scores_false_keeps_the_plain_answer(client: TestClient) -> None:
    response = await post(client, "/prediction?scores=false", {"text": "encryption of the session key"})
    assert await response.json() == {"label": "cryptography"}


async def test_batch_answers_in_order(client: TestClient) -> None:
    texts = ["the shuttle reached orbit", "the pitcher threw strikes", "a pgp key", "the goalie and the puck"] * 8
    response = await post(client, "/predictions", {"texts": texts})
    assert response.status == 200
    body = await response.json()
    assert body == {"labels": ["space", "baseball", "cryptography", "hockey"] * 8}


async def test_batch_labels_match_single_predictions(client: TestClient) -> None:
    texts = [f"post number {i} about {topic}" for i, topic in enumerate(["orbit", "voltage", "senate", "inning"] * 5)]
    batch = await (await post(client, "/predictions", {"texts": texts})).json()
    singles = [(await (await post(client, "/prediction", {"text": t})).json())["label"] for t in texts]
    assert batch["labels"] == singles


async def test_batch_with_scores(client: TestClient) -> None:
    body = await (await post(client, "/predictions?scores=1", {"texts": ["orbit", "hockey"]})).json()
    assert len(body["scores"]) == 2
    assert all(set(s) == LABELS for s in body["scores"])


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "'text' is required"),
        ({"texts": ["a"]}, "'text' is required"),
        ({"text": None}, "must be a string, not null"),
        ({"text": 42}, "must be a string, not a number"),
        ({"text": True}, "must be a string, not a boolean"),
        ({"text": ["a"]}, "must be a string, not an array"),
        ({"text": {"a": 1}}, "must be a string, not an object"),
        ({"text": ""}, "must not be empty or only whitespace"),
        ({"text": " \t\n "}, "must not be empty or only whitespace"),
        ({"text": "\u3000\u00a0"}, "must not be empty or only whitespace"),
        (
            [{"text": "a"}],
            'must be a JSON object, {"text": "..."}; to classify several texts, POST {"texts": [...]} to /predictions',
        ),
        ("text", "must be a JSON object, not a string"),
        (None, "must be a JSON object, not null"),
    ],
)
async def test_invalid_bodies_answer_405_with_the_reason(client: TestClient, body: object, detail: str) -> None:
    response = await post(client, "/prediction", body)
    assert response.status == 405
    answer = await response.json()
    assert answer["error"] == "validation_error"
    assert detail in answer["detail"]


@pytest.mark.parametrize("raw", [b"", b"{", b'{"text": "a"', b"not json", b"\xff\xfe", b'{"text": "\\ud800"}'])
async def test_malformed_json_answers_405(client: TestClient, raw: bytes) -> None:
    response = await client.post("/prediction", data=raw, headers=JSON)
    assert response.status == 405
    assert (await response.json())["detail"].startswith("the body is not valid JSON")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "'texts' is required"),
        ({"texts": "abc"}, "'texts' must be an array, not a string"),
        ({"texts": []}, "must hold 1 to 256 items, not 0"),
        ({"texts": ["ok"] * 257}, "must hold 1 to 256 items, not 257"),
        ({"texts": ["ok", 3]}, "'texts[1]' must be a string"),
        ({"texts": ["ok", "fine", "  "]}, "'texts[2]' must not be empty"),
    ],
)
async def test_invalid_batches_name_the_problem(client: TestClient, body: object, detail: str) -> None:
    response = await post(client, "/predictions", body)
    assert response.status == 405
    assert detail in (await response.json())["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
async def test_non_json_content_type_answers_415(client: TestClient, content_type: str) -> None:
    response = await client.post("/prediction", data=b'{"text": "a"}', headers={"Content-Type": content_type})
    assert response.status == 415
    body = await response.json()
    assert body["error"] == "unsupported_media_type"
    assert "send the header 'Content-Type: application/json'" in body["detail"]


async def test_missing_content_type_answers_415(client: TestClient) -> None:
    response = await client.post("/prediction", data=b'{"text": "a"}', skip_auto_headers=["Content-Type"])
    assert response.status == 415


async def test_json_content_type_with_charset_is_accepted(client: TestClient) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = await client.post("/prediction", data=b'{"text": "orbit"}', headers=headers)
    assert response.status == 200


@pytest.mark.parametrize("settings", [Settings(workers=1, max_body_bytes=1000)])
async def test_body_over_the_limit_answers_413(client: TestClient) -> None:
    response = await post(client, "/prediction", {"text": "x" * 1000})
    assert response.status == 413
    body = await response.json()
    assert body["error"] == "payload_too_large"
    assert "the 1000 bytes this service accepts" in body["detail"]
    assert (await post(client, "/prediction", {"text": "x" * 900})).status == 200


@pytest.mark.parametrize("settings", [Settings(workers=1, body_timeout_seconds=0.3)])
async def test_a_body_that_stalls_answers_408(client: TestClient) -> None:
    async def stalling_body() -> AsyncIterator[bytes]:
        yield b'{"text": "orb'
        await asyncio.sleep(2)
        yield b'it"}'

    response = await client.post("/prediction", data=stalling_body(), headers=JSON)
    assert response.status == 408
    assert (await response.json())["error"] == "request_timeout"
    assert (await post(client, "/prediction", {"text": "orbit"})).status == 200


@pytest.mark.parametrize("settings", [Settings(workers=1, max_pending=4)])
async def test_saturation_answers_503_with_retry_after_at_once(client: TestClient) -> None:
    response = await post(client, "/predictions", {"texts": ["orbit"] * 5})
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"] == "overloaded"
    assert (await post(client, "/predictions", {"texts": ["orbit"] * 4})).status == 200


@pytest.mark.parametrize("settings", [Settings(workers=1, max_batch_items=3)])
async def test_batch_limit_is_configurable(client: TestClient) -> None:
    assert (await post(client, "/predictions", {"texts": ["a1"] * 3})).status == 200
    assert (await post(client, "/predictions", {"texts": ["a1"] * 4})).status == 405


async def test_bad_scores_flag_answers_405(client: TestClient) -> None:
    response = await post(client, "/prediction?scores=maybe", {"text": "orbit"})
    assert response.status == 405


async def test_unknown_path_answers_json_404(client: TestClient) -> None:
    response = await client.get("/nope")
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "not_found"
    assert body["detail"] == "Not Found: no route /nope; the API is described at /docs"


async def test_wrong_method_answers_json_405_with_allow(client: TestClient) -> None:
    response = await client.get("/prediction")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    body = await response.json()
    assert body["error"] == "method_not_allowed"
    assert "/prediction takes POST with a JSON body (Content-Type: application/json)" in body["detail"]


@pytest.mark.parametrize("body", [{"texts": ["orbit", "puck"]}, {"text": ["orbit", "puck"]}, ["orbit", "puck"]])
async def test_several_texts_sent_to_prediction_are_pointed_to_predictions(client: TestClient, body: object) -> None:
    response = await post(client, "/prediction", body)
    assert response.status == 405
    assert 'POST {"texts": [...]} to /predictions' in (await response.json())["detail"]


async def test_the_root_is_an_index_of_where_to_go(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200
    body = await response.json()
    assert body["model"]["name"] == client.app[MODEL_INFO]["name"]
    for name in ("docs", "model", "metrics"):
        assert (await client.get(body["links"][name])).status == 200, name


async def test_model_metadata(client: TestClient) -> None:
    body = await (await client.get("/model")).json()
    info = json.loads((ROOT / "model/model.json").read_text())
    assert body == info
    assert set(body["labels"]) == LABELS


async def test_health_and_readiness(client: TestClient) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    assert await (await client.get("/readyz")).json() == {"status": "ready"}


async def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    mine = await post(client, "/prediction", {"text": "orbit"}, headers={"X-Request-ID": "abc-123"})
    assert mine.headers["X-Request-ID"] == "abc-123"
    fresh = await post(client, "/prediction", {"text": "orbit"})
    assert len(fresh.headers["X-Request-ID"]) == 32
    another = await post(client, "/prediction", {"text": "orbit"})
    assert another.headers["X-Request-ID"] != fresh.headers["X-Request-ID"]
    error = await client.get("/nope", headers={"X-Request-ID": "err-1"})
    assert error.headers["X-Request-ID"] == "err-1"
    hostile = await client.get("/healthz", headers={"X-Request-ID": "a b;" * 100})
    assert len(hostile.headers["X-Request-ID"]) == 32


async def test_docs_page_serves_swagger_ui(client: TestClient) -> None:
    page = await client.get("/docs")
    assert page.status == 200
    html = await page.text()
    assert "openapi3.json" in html
    asset = await client.get("/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200


@pytest.mark.parametrize("settings", [Settings(workers=1, body_timeout_seconds=0.3)])
async def test_every_body_gives_its_bytes_back_to_the_budget_whatever_its_answer(client: TestClient) -> None:
    answers = [
        await client.post("/prediction", data=b'{"text": "orbit"}', headers=JSON),
        await client.post("/prediction", data=b"{not json", headers=JSON),
        await client.post("/prediction", data=b'{"text": ""}', headers=JSON),
        await client.post("/predictions", data=b'{"texts": "no"}', headers=JSON),
        await client.post("/prediction", data=b'{"text": "orbit"}', headers={"Content-Type": "text/plain"}),
    ]
    assert [a.status for a in answers] == [200, 405, 405, 405, 415]
    bodies = client.app[BODIES]
    assert bodies.held == 0
    assert bodies.limit >= client.app[SETTINGS].max_body_bytes
