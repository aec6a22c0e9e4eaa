"""Model-health signals: confidence, tokens, unknown-token share, and the label mix's drift from training."""

from __future__ import annotations

import json
import math

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from function.drift import LabelWindow, jensen_shannon
from tests.helpers import ROOT, split_texts

INFO = json.loads((ROOT / "model" / "model.json").read_bytes())


def test_jensen_shannon_is_zero_for_the_same_mix_and_one_bit_for_disjoint_ones() -> None:
    assert jensen_shannon([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert 0 < jensen_shannon([0.6, 0.4], [0.5, 0.5]) < 0.01


def test_the_window_slides_and_forgets_the_oldest_labels() -> None:
    window = LabelWindow(["a", "b"], {"a": 1, "b": 1}, size=4)
    assert math.isnan(window.divergence())
    for label in "aabb":
        window.add(label)
    assert window.filled == 4
    assert window.divergence() == pytest.approx(0.0)
    for label in "aaaa":  # the b's slide out
        window.add(label)
    assert window.filled == 4
    assert window.divergence() == pytest.approx(jensen_shannon([1.0, 0.0], [0.5, 0.5]))
    window.add("not a label")
    assert window.filled == 4


def test_without_a_reference_mix_the_divergence_is_not_a_number() -> None:
    window = LabelWindow(["a"], None)
    window.add("a")
    assert math.isnan(window.divergence())


async def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = await (await client.get("/metrics")).text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_every_prediction_is_observed_with_its_confidence_tokens_and_unknown_share(client: TestClient) -> None:
    texts = [*split_texts()[:30], "zzqq xxyy unknownword", "orbit"]
    response = await client.post("/predictions?scores=true", json={"texts": texts})
    body = await response.json()
    seen = await samples(client)

    confidence_count = sum(v for (name, _), v in seen.items() if name == "textclf_prediction_confidence_count")
    assert confidence_count == len(texts)
    top = [max(scores.values()) for scores in body["scores"]]
    confidence_sum = sum(v for (name, _), v in seen.items() if name == "textclf_prediction_confidence_sum")
    assert confidence_sum == pytest.approx(sum(top), rel=1e-5)
    for label in INFO["labels"]:  # every label's histogram exists, with the 0.5 bucket the dashboard reads
        assert ("textclf_prediction_confidence_bucket", (("label", label), ("le", "0.5"))) in seen

    assert seen[("textclf_text_tokens_count", ())] == len(texts)
    assert seen[("textclf_text_unknown_token_ratio_count", ())] == len(texts)
    assert seen[("textclf_text_unknown_token_ratio_bucket", (("le", "0.0"),))] < len(texts)  # one is all unknown
    assert seen[("textclf_text_unknown_token_ratio_bucket", (("le", "0.75"),))] == len(texts) - 1
    assert seen[("textclf_label_drift_window_texts", ())] == len(texts)
    assert 0 <= seen[("textclf_label_drift_jensen_shannon", ())] <= 1


async def test_a_label_mix_unlike_trainings_raises_the_drift_gauge(client: TestClient) -> None:
    await client.post("/predictions", json={"texts": ["the goalie stopped the puck in the third period"] * 200})
    one_label = (await samples(client))[("textclf_label_drift_jensen_shannon", ())]
    counts = INFO["training_data"]["label_counts"]
    total = sum(counts.values())
    only_hockey = [1.0 if label == "hockey" else 0.0 for label in INFO["labels"]]
    expected = jensen_shannon(only_hockey, [counts[label] / total for label in INFO["labels"]])
    assert one_label == pytest.approx(expected, rel=1e-6)
    assert one_label > 0.5
