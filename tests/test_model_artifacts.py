"""The committed model/: consistent metadata, metrics recomputable with onnxruntime, parity."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.pipeline import Pipeline

import train
from function.inference.session import vocabulary
from function.model_info import EXPLAIN_OUTPUTS, HEALTH_OUTPUTS, INPUT, OUTPUTS, VOCABULARY
from tests.helpers import ROOT

MODEL_DIR = ROOT / "model"

#: Texts at the edges of tokenisation and normalisation, where Python's `re` and RE2 or the
#: locale-dependent lower-casing could disagree.
EDGE_TEXTS = [
    "",
    " ",
    "\t\n\r ",
    "!!! ??? ... ---",
    "a",
    "x y z",
    "The Space Shuttle ORBITER reached ORBIT",
    "ENCRYPTION KEY ESCROW",
    "gOaLiE pUcK NhL",
    "Café résumé naïve façade coöperate — Ünïcödé ÉLECTRONIQUE",
    "Ça va? Señor Müller's Übergröße straße",
    "Привет, ракета летит на орбиту",  # Cyrillic
    "Ελληνικά γράμματα και κρυπτογραφία",  # Greek
    "日本語のテキスト、宇宙ロケット打ち上げ",  # CJK
    "한국어 하키 골키퍼",
    "🚀🚀 launch 🛰️ satellite 🔐 key 🏒 puck ⚾ bat",
    "İstanbul DİYARBAKIR ıi",  # dotted/dotless i: lower() differs by locale
    "\u212a\u212b Kelvin and Angstrom signs",  # lower-case to ASCII 'k' in Unicode
    "orbit\u00a0shuttle\u2003launch\u200bnasa",  # no-break, em and zero-width spaces
    "1993 2000 3.14159 42 007 1e10 0x1F",
    "From: someone@cs.cmu.edu\nSubject: Re: Clipper chip\nOrganization: CMU\nLines: 12\n\n> key escrow",
    "word_with_underscores and-hyphens and.dots",
    "A" * 5000 + " orbit",
    ("goalie puck " * 2000) + ("pitcher inning " * 2000),
    "\x00\x01\x02 control characters orbit",
    "mixed 123abc abc123 a1b2c3",
]


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    return dict(json.loads((MODEL_DIR / "model.json").read_text()))


@pytest.fixture(scope="module")
def evaluation() -> dict[str, Any]:
    return dict(json.loads((MODEL_DIR / "evaluation.json").read_text()))


@pytest.fixture(scope="module")
def test_data() -> train.Dataset:
    return train.load_dataset(ROOT / "data/test.jsonl.gz")


@pytest.fixture(scope="module")
def onnx_labels(session, test_data: train.Dataset) -> list[str]:  # type: ignore[no-untyped-def]
    return train.onnx_predict(session, test_data.texts)[0]


@pytest.fixture(scope="module")
def sklearn_model(served_pipeline: Pipeline) -> Pipeline:
    return served_pipeline


def test_metadata_describes_the_committed_file(metadata: dict[str, Any]) -> None:
    blob = (MODEL_DIR / "model.onnx").read_bytes()
    assert metadata["sha256"] == hashlib.sha256(blob).hexdigest()
    assert metadata["size_bytes"] == len(blob) < 5 * 1024 * 1024
    assert metadata["labels"] == sorted(train.LABELS)
    assert metadata["input"]["name"] == INPUT
    assert [o["name"] for o in metadata["outputs"].values()] == list(OUTPUTS)
    data_sha = hashlib.sha256((ROOT / "data/train.jsonl.gz").read_bytes()).hexdigest()
    assert metadata["training_data"]["sha256"] == data_sha
    for key in ("name", "version", "created", "libraries", "metrics"):
        assert metadata[key]


def test_onnx_graph_declares_text_in_label_and_probabilities_out(session) -> None:  # type: ignore[no-untyped-def]
    assert [(i.name, i.type) for i in session.get_inputs()] == [("text", "tensor(string)")]
    outputs = [*OUTPUTS, *HEALTH_OUTPUTS, *EXPLAIN_OUTPUTS]
    assert [o.name for o in session.get_outputs()] == outputs


def test_the_terms_are_metadata_not_an_output(session, metadata: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    terms = vocabulary(session)
    assert VOCABULARY in session.get_modelmeta().custom_metadata_map
    assert len(terms) == metadata["vocabulary_size"] == len(set(terms))
    assert terms == sorted(terms)


def test_headline_metrics_meet_the_targets(
    evaluation: dict[str, Any], onnx_labels: list[str], test_data: train.Dataset
) -> None:
    accuracy = accuracy_score(test_data.labels, onnx_labels)
    macro_f1 = precision_recall_fscore_support(test_data.labels, onnx_labels, average="macro")[2]
    assert accuracy >= 0.955
    assert macro_f1 >= 0.955
    assert evaluation["baseline"]["accuracy"] == pytest.approx(0.870, abs=0.005)


@pytest.fixture(scope="module")
def views(test_data: train.Dataset) -> list[train.View]:
    return train.evaluation_views(test_data, train.load_dataset(ROOT / "data/plain.jsonl"))


def test_every_view_is_reported_cleaned_first(evaluation: dict[str, Any], views: list[train.View]) -> None:
    assert list(evaluation["views"]) == [v.name for v in views] == ["cleaned", "committed", "short", "plain"]
    assert len(views[3].texts) >= 20 * len(train.LABELS)
    assert {label: views[3].truth.count(label) >= 20 for label in train.LABELS} == dict.fromkeys(train.LABELS, True)


@pytest.mark.parametrize("index", range(4))
def test_every_views_figures_are_recomputable_with_onnxruntime(  # type: ignore[no-untyped-def]
    evaluation: dict[str, Any], metadata: dict[str, Any], views: list[train.View], session, index: int
) -> None:
    view = views[index]
    served, labels = evaluation["views"][view.name]["served"], metadata["labels"]
    predicted, probabilities = train.onnx_predict(session, view.texts)
    truth = view.truth
    assert served["n"] == len(truth)
    assert served["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert metadata["metrics"]["views"][view.name] == served["accuracy"]
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        row = served["per_class"][label]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    for avg in ("micro", "macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(truth, predicted, labels=labels, average=avg, zero_division=0)
        assert served["averages"][avg] == pytest.approx({"precision": ap, "recall": ar, "f1": af})
    assert (
        served["confusion_matrix"]["rows_true_cols_predicted"]
        == confusion_matrix(truth, predicted, labels=labels).tolist()
    )
    ci = served["bootstrap_95ci"]
    assert train.bootstrap_ci(truth, predicted, labels, ci["rounds"]) == ci
    assert ci["accuracy"][0] <= served["accuracy"] <= ci["accuracy"][1]
    assert served["by_length"] == train.accuracy_by_length(truth, predicted, view.words)
    assert sum(row["n"] for row in served["by_length"]) == len(truth)
    correct = np.array([t == q for t, q in zip(truth, predicted, strict=True)])
    calibration = train.calibration(probabilities.max(axis=1), correct)
    assert served["calibration"]["ece"] == pytest.approx(calibration.ece, abs=1e-9)
    stripped = train.onnx_predict(session, [train.clean(t) for t in view.texts])[0]
    assert evaluation["views"][view.name]["served_on_cleaned_input"] == accuracy_score(truth, stripped)


def test_the_committed_view_is_the_headline_of_model_json(evaluation: dict[str, Any], metadata: dict[str, Any]) -> None:
    committed = evaluation["views"]["committed"]
    assert evaluation["served"]["accuracy"] == committed["served"]["accuracy"] == metadata["metrics"]["accuracy"]
    assert evaluation["baseline"]["accuracy"] == committed["baseline"]["accuracy"]


def test_words_are_counted_after_cleaning(views: list[train.View], test_data: train.Dataset) -> None:
    cleaned, committed = views[0], views[1]
    assert cleaned.words == committed.words == [len(train.clean(t).split()) for t in test_data.texts]


def test_markdown_report_shows_the_same_numbers(evaluation: dict[str, Any]) -> None:
    text = (MODEL_DIR / "evaluation.md").read_text()
    for view in evaluation["views"].values():
        assert f"{view['served']['accuracy']:.4f}" in text
        assert f"{view['baseline']['accuracy']:.4f}" in text
        assert f"{view['served']['calibration']['ece']:.4f}" in text
    assert text.index("| cleaned |") < text.index("| committed |")
    assert (MODEL_DIR / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_onnx_agrees_with_scikit_learn_on_the_test_set(
    sklearn_model: Pipeline, onnx_labels: list[str], test_data: train.Dataset
) -> None:
    expected = list(sklearn_model.predict(test_data.texts))
    agree = sum(a == b for a, b in zip(expected, onnx_labels, strict=True))
    assert agree / len(expected) >= 0.999


def test_onnx_agrees_with_scikit_learn_on_edge_texts(sklearn_model: Pipeline, session) -> None:  # type: ignore[no-untyped-def]
    expected = list(sklearn_model.predict(EDGE_TEXTS))
    got, probabilities = train.onnx_predict(session, EDGE_TEXTS)
    assert got == expected
    scores = train.decision_scores(sklearn_model, EDGE_TEXTS)
    scale = json.loads((MODEL_DIR / "model.json").read_text())["softmax_scale"]
    reference = np.exp(scale * scores - (scale * scores).max(axis=1, keepdims=True))
    reference /= reference.sum(axis=1, keepdims=True)
    assert np.allclose(probabilities, reference, atol=1e-4)


def test_edge_texts_one_at_a_time_match_the_batch(session) -> None:  # type: ignore[no-untyped-def]
    batch = train.onnx_predict(session, EDGE_TEXTS)[0]
    singles = [train.onnx_predict(session, [t])[0][0] for t in EDGE_TEXTS]
    assert singles == batch


def test_model_loads_and_predicts_under_the_c_locale() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k != "LANG"} | {"LC_ALL": "C"}
    code = (
        "from function.inference.session import load_session, predict; s = load_session('model/model.onnx');"
        "print(predict(s, ['the goalie stopped the puck', 'Ünïcödé café'])[0])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("['hockey', ")
