"""train.calibration: ECE and MCE on constructed inputs, and the committed report recomputed from model.onnx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from scipy.special import softmax

import train
from tests.helpers import ROOT

MODEL_DIR = ROOT / "model"


def test_perfectly_calibrated_confidences_have_zero_error() -> None:
    # In each bin the share of correct answers is exactly the confidence: 1 of 4 at 0.25,
    # 3 of 4 at 0.75, 4 of 4 at 1.0.
    confidences = np.array([0.25] * 4 + [0.75] * 4 + [1.0] * 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    result = train.calibration(confidences, correct, bins=10)
    assert result.ece == pytest.approx(0.0, abs=1e-12)
    assert result.mce == pytest.approx(0.0, abs=1e-12)
    assert result.n == 12


def test_always_confident_and_always_wrong_is_the_largest_error() -> None:
    result = train.calibration(np.full(50, 0.99), np.zeros(50, dtype=bool), bins=15)
    assert result.ece == pytest.approx(0.99)
    assert result.mce == pytest.approx(0.99)


def test_the_error_is_the_count_weighted_mean_gap_and_mce_the_largest() -> None:
    # 3 texts at 0.95, all right (gap 0.05); 1 text at 0.55, wrong (gap 0.55).
    result = train.calibration(np.array([0.95, 0.95, 0.95, 0.55]), np.array([True, True, True, False]), bins=10)
    assert result.ece == pytest.approx(0.75 * 0.05 + 0.25 * 0.55)
    assert result.mce == pytest.approx(0.55)


def test_bins_are_equal_width_half_open_intervals_and_empty_ones_say_so() -> None:
    result = train.calibration(np.array([0.0, 0.1, 0.3, 0.5, 0.50001, 1.0]), np.ones(6, dtype=bool), bins=10)
    assert [(b.lower, b.upper) for b in result.bins] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert [b.count for b in result.bins] == [2, 0, 1, 0, 1, 1, 0, 0, 0, 1]
    empty = result.bins[1]
    assert (empty.confidence, empty.accuracy) == (None, None)
    assert result.bins[0].confidence == pytest.approx(0.05)
    assert sum(b.count for b in result.bins) == result.n


@pytest.mark.parametrize(
    ("confidences", "correct"),
    [(np.array([]), np.array([], dtype=bool)), (np.array([0.5, 0.6]), np.array([True])), (np.ones((2, 2)), None)],
)
def test_malformed_inputs_are_refused(confidences: np.ndarray, correct: Any) -> None:
    with pytest.raises(ValueError, match="non-empty 1-d arrays"):
        train.calibration(confidences, np.ones_like(confidences, dtype=bool) if correct is None else correct)


def test_rescale_undoes_a_softmax_scale() -> None:
    logits = np.random.default_rng(0).normal(size=(20, 6)) * 3
    scaled = softmax(5.0 * logits, axis=1)
    assert np.allclose(train.rescale(scaled, 1 / 5.0), softmax(logits, axis=1), atol=1e-9)


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of a JSON-like value with its path, for approximate comparison."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return dict(json.loads((MODEL_DIR / "evaluation.json").read_text())["calibration"])


def test_the_committed_calibration_is_recomputable_from_the_onnx_probabilities(  # type: ignore[no-untyped-def]
    committed: dict[str, Any], session
) -> None:
    test = train.load_dataset(ROOT / "data/test.jsonl.gz")
    labels, probabilities = train.onnx_predict(session, test.texts)
    scale = json.loads((MODEL_DIR / "model.json").read_text())["softmax_scale"]
    recomputed = train.calibration_report(test.labels, labels, probabilities, scale)
    assert dict(leaves(recomputed)) == pytest.approx(dict(leaves(committed)), abs=1e-9)
    assert committed["served"]["ece"] < committed["unscaled"]["ece"], "the fitted scale must improve calibration"


def test_the_markdown_report_shows_the_calibration(committed: dict[str, Any]) -> None:
    text = (MODEL_DIR / "evaluation.md").read_text()
    assert f"**{committed['served']['ece']:.4f}**" in text
    assert f"{committed['served']['mce']:.4f}" in text
    assert "![reliability diagram](reliability.png)" in text
    assert (MODEL_DIR / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
