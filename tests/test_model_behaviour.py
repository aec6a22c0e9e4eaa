"""The committed model on the texts users actually send: no evidence, one word, any consumer's call."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from function.inference import session as onnx_session
from function.model_info import INPUT, OUTPUTS
from tests.helpers import ROOT

INFO = json.loads((ROOT / "model" / "model.json").read_bytes())
COUNTS = INFO["training_data"]["label_counts"]
#: The most a text without evidence may claim: the largest label's share of the training data, plus 0.05.
NO_EVIDENCE_CEILING = max(COUNTS.values()) / sum(COUNTS.values()) + 0.05


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "asdfgh qwerty",
        "zzzqqq xxyyzz vvbbnn",
        "!!! ??? ...",
        "Привет, ракета",
        "日本語のテキスト",
        "q w e r t y",
    ],
)
def test_a_text_with_no_term_the_model_knows_gets_about_the_prior(session: Any, text: str) -> None:
    out = onnx_session.predict(session, [text])
    assert out.unknown[0] == out.tokens[0], "every token is unknown"
    assert float(out.probabilities[0].max()) <= NO_EVIDENCE_CEILING


@pytest.mark.parametrize("word", ["hello", "thanks", "question"])
def test_a_single_common_word_is_not_a_confident_answer(session: Any, word: str) -> None:
    out = onnx_session.predict(session, [word])
    assert out.unknown[0] == 0, f"{word!r} should be a word the model knows"
    assert float(out.probabilities[0].max()) <= 0.6


@pytest.mark.parametrize("word", ["hi", "help", "please", "anyone", "today", "yes", "ok", "great", "info", "what"])
def test_no_single_common_word_is_a_certain_answer(session: Any, word: str) -> None:
    """Some common words lean on a topic in this corpus ("hi" is a logic level, "help" opens many
    electronics questions): one of them alone may pass 0.6, never 0.85."""
    out = onnx_session.predict(session, [word])
    assert out.unknown[0] == 0, f"{word!r} should be a word the model knows"
    assert float(out.probabilities[0].max()) <= 0.85


def test_a_sentence_about_one_topic_is_answered_with_confidence(session: Any) -> None:
    out = onnx_session.predict(session, ["The goalie stopped every shot and the team won the Stanley Cup."])
    assert out.labels == ["hockey"]
    assert float(out.probabilities[0].max()) >= 0.8


def _best_seconds(call: Any, rounds: int = 7) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def test_asking_for_every_output_costs_little_more_than_the_served_ones(session: Any) -> None:
    """What Triton or any generic ONNX runner does: ``run(None, ...)``. The terms are metadata, not an output."""
    lines = (ROOT / "data/plain.jsonl").read_text().splitlines()
    texts = np.array([json.loads(line)["text"] for line in lines] * 4, dtype=object)
    feed = {INPUT: texts}
    every = lambda: session.run(None, feed)  # noqa: E731
    served = lambda: session.run(list(OUTPUTS), feed)  # noqa: E731
    every(), served()
    ratios = [_best_seconds(every) / _best_seconds(served) for _ in range(3)]
    assert min(ratios) <= 1.5, ratios
    names = [o.name for o in session.get_outputs()]
    assert all(len(a) for a in session.run(None, feed)), names
