"""Explanations are exact: the listed terms, the rest and the intercept add up to scikit-learn's decision value.

The committed model is the served one; scikit-learn's pipeline is refitted here from the
training data with the same seed, and must be the same model (its labels agree on every text).
A term's contribution is its tf-idf weight times the label's coefficient for it, plus its share of
the text's mean static vector (its count times its projected vector, over the text's tokens with a
vector plus the prior): both halves are linear in the text's token counts.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

import train
from function.inference import session as onnx_session
from function.inference.classifier import EXPLAINED_TERMS
from tests.helpers import ROOT

INFO = json.loads((ROOT / "model" / "model.json").read_bytes())


@pytest.fixture(scope="module")
def pipeline(served_pipeline: Any) -> Any:
    return served_pipeline


@pytest.fixture(scope="module")
def test_texts() -> list[str]:
    return train.load_dataset(ROOT / "data/test.jsonl.gz").texts


def test_contributions_and_intercept_reproduce_scikit_learns_decision_value(
    session: Any, pipeline: Any, test_texts: list[str]
) -> None:
    decision = pipeline.decision_function(test_texts)
    classes = list(pipeline.classes_)
    for start in range(0, len(test_texts), 128):
        texts = test_texts[start : start + 128]
        out = onnx_session.predict(session, texts, explain=range(len(texts)))
        for i, label in enumerate(out.labels):
            e = out.explanations[i]
            expected = decision[start + i, classes.index(label)]
            total = e.intercept + sum(c for _, _, c in e.terms) + e.other
            assert total == pytest.approx(expected, rel=1e-5, abs=1e-5), texts[i][:80]
            assert e.decision == pytest.approx(expected, rel=1e-5, abs=1e-5)
            assert label == classes[int(np.argmax(decision[start + i]))]


def expected_terms(pipeline: Any, text: str, label_index: int) -> list[tuple[str, float, float]]:
    """(term, tf-idf weight, contribution) of every term of ``text`` known to the model, from scikit-learn."""
    features, clf = pipeline.steps[0][1], pipeline.steps[-1][1]
    parts = train.linear_parts(pipeline)
    counts = features.counts([text])
    weights = features.transform([text])[:, : len(parts.terms)]
    known = float((counts @ parts.has_vector)[0])
    denominator = known + parts.mean_prior
    rows = []
    for j, c in zip(counts.indices, counts.data, strict=True):
        weight = float(weights[0, j])
        contribution = (
            weight * parts.term_weights[j, label_index] + c * parts.vector_weights[j, label_index] / denominator
        )
        rows.append((parts.terms[j], weight, float(contribution)))
    assert clf.classes_[label_index] == parts.classes[label_index]
    return rows


def test_terms_are_the_largest_contributions_in_order_with_their_tf_idf_weights(
    session: Any, pipeline: Any, test_texts: list[str]
) -> None:
    classes = list(pipeline.classes_)
    texts = test_texts[:50]
    out = onnx_session.predict(session, texts, explain=range(len(texts)))
    for i, label in enumerate(out.labels):
        terms = expected_terms(pipeline, texts[i], classes.index(label))
        expected = sorted(terms, key=lambda t: -t[2])[:EXPLAINED_TERMS]
        got = out.explanations[i].terms
        assert [t for t, _, _ in got] == [t for t, _, _ in expected]
        assert [w for _, w, _ in got] == pytest.approx([w for _, w, _ in expected], rel=1e-5, abs=1e-7)
        assert [c for _, _, c in got] == pytest.approx([c for _, _, c in expected], rel=1e-4, abs=1e-6)


def test_a_text_of_unknown_words_only_is_all_intercept(session: Any) -> None:
    out = onnx_session.predict(session, ["zzzqqq xxyyzz", "the shuttle"], explain=[0])
    e = out.explanations[0]
    assert e.terms == []
    assert e.other == 0.0
    assert e.decision == pytest.approx(e.intercept)
    assert 1 not in out.explanations
    assert list(out.tokens) == [2, 2]
    assert list(out.unknown) == [2, 0]


def test_token_counts_follow_the_models_token_pattern(session: Any, pipeline: Any, test_texts: list[str]) -> None:
    texts = [*test_texts[:64], "", "a b c", "ÄÖÜ über", "42 is 42"]
    vocabulary = pipeline.steps[0][1].vocabulary_
    out = onnx_session.predict(session, texts)
    for i, text in enumerate(texts):
        tokens = train.tokenize(text)
        assert out.tokens[i] == len(tokens), text[:60]
        assert out.unknown[i] == sum(t not in vocabulary for t in tokens), text[:60]


async def test_explain_true_on_the_http_api(client: TestClient) -> None:
    response = await client.post("/prediction?explain=true&scores=true", json={"text": "the shuttle reached orbit"})
    body = await response.json()
    e = body["explanation"]
    assert e["label"] == body["label"] == "space"
    assert e["terms"][0]["term"] in ("orbit", "shuttle")
    contributions = [t["contribution"] for t in e["terms"]]
    assert contributions == sorted(contributions, reverse=True)
    assert e["decision"] == pytest.approx(e["intercept"] + sum(contributions) + e["other_terms"])
    plain = await (await client.post("/prediction", json={"text": "the shuttle reached orbit"})).json()
    assert "explanation" not in plain
    batch = await (await client.post("/predictions?explain=true", json={"texts": ["orbit", "the goalie"]})).json()
    assert [x["label"] for x in batch["explanations"]] == batch["labels"]


async def test_explain_on_the_open_inference_protocol(client: TestClient) -> None:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["the shuttle reached orbit", "pgp key"]}
    path = f"/v2/models/{INFO['name']}/infer"
    body = await (await client.post(path, json={"inputs": [tensor], "parameters": {"explain": True}})).json()
    label, _, explanation = body["outputs"]
    assert (explanation["name"], explanation["datatype"], explanation["shape"]) == ("explanation", "BYTES", [2])
    assert [json.loads(x)["label"] for x in explanation["data"]] == label["data"]
    only = await (await client.post(path, json={"inputs": [tensor], "outputs": [{"name": "explanation"}]})).json()
    assert [o["name"] for o in only["outputs"]] == ["explanation"]
