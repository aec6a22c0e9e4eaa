"""train.py: data validation with file and line, a full run on tiny data, atomic output."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train
from function.inference.session import load_session
from tests.helpers import ROOT

WORDS = {
    "space": "orbit shuttle nasa launch moon rocket satellite",
    "electronics": "circuit voltage resistor amplifier capacitor transistor",
    "cryptography": "encryption key pgp cipher clipper escrow",
    "politics": "senate president law vote congress government",
    "hockey": "goalie puck nhl ice rink playoff",
    "baseball": "pitcher inning bat homer yankees mlb",
}


def write_jsonl(path: Path, rows: list[object], gz: bool = True) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def tiny_rows(n_per_label: int, seed: int) -> list[object]:
    rng = random.Random(seed)
    rows: list[object] = []
    for label, words in WORDS.items():
        vocab = words.split()
        for _ in range(n_per_label):
            rows.append({"text": " ".join(rng.choices(vocab, k=12)) + " the a of", "label": label})
    return rows


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"text": "a", "label": "space"}', "{not json"], ":2: malformed JSON"),
        (['{"label": "space"}'], ":1: 'text' is missing or not a string"),
        (['{"text": 3, "label": "space"}'], ":1: 'text' is missing or not a string"),
        (['{"text": "a"}'], ":1: 'label' is missing"),
        (['{"text": "a", "label": "cooking"}'], ":1: unknown label 'cooking'"),
        (['["text", "label"]'], ":1: expected a JSON object"),
        ([], "no examples (the file is empty)"),
    ],
)
def test_bad_training_data_names_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl.gz", list(lines))
    with pytest.raises(train.DataError, match=None) as error:
        train.load_dataset(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_plain_jsonl_is_read_and_hashed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "orbit", "label": "space"}], gz=False)
    data = train.load_dataset(path)
    assert data.texts == ["orbit"]
    assert data.labels == ["space"]
    assert len(data.sha256) == 64


def run_train(tmp_path: Path, train_rows: list[object], out: Path) -> subprocess.CompletedProcess[str]:
    tr = write_jsonl(tmp_path / "train.jsonl.gz", train_rows)
    te = write_jsonl(tmp_path / "test.jsonl.gz", tiny_rows(5, seed=2))
    command = [
        sys.executable,
        "train.py",
        "--train",
        str(tr),
        "--test",
        str(te),
        "--out",
        str(out),
        "--candidates",
        "svc",
        "svc-evidence",
        "--folds",
        "2",
        "--bootstrap",
        "50",
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_training_run_writes_a_consistent_model_folder(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = run_train(tmp_path, tiny_rows(12, seed=1), out)
    assert result.returncode == 0, result.stderr
    assert "selected" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png",
        "evaluation.json",
        "evaluation.md",
        "model.json",
        "model.onnx",
        "reliability.png",
    ]
    meta = json.loads((out / "model.json").read_text())
    assert meta["labels"] == sorted(WORDS)
    session = load_session((out / "model.onnx").read_bytes())
    labels, probs = train.onnx_predict(session, ["the goalie and the puck", "pgp cipher key"])
    assert labels == ["hockey", "cryptography"]
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_training_is_deterministic(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert run_train(tmp_path, tiny_rows(12, seed=1), out).returncode == 0
        runs.append((out / "model.onnx").read_bytes())
    assert runs[0] == runs[1]


def test_failed_training_leaves_the_model_folder_untouched(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"previous model")
    result = run_train(tmp_path, [*tiny_rows(12, seed=1), '{"text": "x", "label": "cooking"}'], out)
    assert result.returncode == 2
    assert "unknown label 'cooking'" in result.stderr
    assert [p.name for p in out.iterdir()] == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"previous model"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model-")]


def test_help_lists_the_options() -> None:
    result = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--train", "--test", "--out", "--candidates", "--folds"):
        assert option in result.stdout


def test_a_failure_while_writing_keeps_the_previous_model(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"previous model")

    def broken_picture(folder: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        train.write_model_dir(out, {"model.onnx": b"new model", "model.json": b"{}"}, broken_picture)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert (out / "model.onnx").read_bytes() == b"previous model"


def test_export_refuses_a_pipeline_it_cannot_reproduce() -> None:
    rows = tiny_rows(3, seed=0)
    texts = [r["text"] for r in rows]  # type: ignore[index]
    labels = [r["label"] for r in rows]  # type: ignore[index]
    bigrams = train.build_pipeline(train.LinearSVC(), ngram_range=(1, 2)).fit(texts, labels)
    with pytest.raises(ValueError, match="unigram"):
        train.export_onnx(bigrams)
    plain_lower = train.build_pipeline(train.LinearSVC(), preprocessor=None).fit(texts, labels)
    with pytest.raises(ValueError, match="ascii_lower"):
        train.export_onnx(plain_lower)


def test_a_candidate_without_prior_intercepts_is_served_when_it_is_the_only_one_named(tmp_path: Path) -> None:
    out = tmp_path / "model"
    tr = write_jsonl(tmp_path / "train.jsonl.gz", tiny_rows(12, seed=1))
    te = write_jsonl(tmp_path / "test.jsonl.gz", tiny_rows(5, seed=2))
    command = [sys.executable, "train.py", "--train", str(tr), "--test", str(te), "--out", str(out)]
    command += ["--candidates", "svc", "--folds", "2", "--bootstrap", "20"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "no candidate named has log-prior intercepts" in result.stdout
    assert json.loads((out / "evaluation.json").read_text())["model_candidate"] == "svc"


def test_missing_word_vectors_name_the_file_and_the_command(tmp_path: Path) -> None:
    with pytest.raises(train.DataError, match="make distill") as error:
        train.load_word_vectors(tmp_path / "nope.npz")
    assert "nope.npz" in str(error.value)


def test_the_committed_word_vectors_are_the_ones_the_model_was_trained_with() -> None:
    vectors = train.load_word_vectors()
    facts = json.loads((ROOT / "model" / "model.json").read_text())["word_vectors"]
    assert facts["sha256"] == vectors.sha256
    assert (facts["words"], facts["dimensions"]) == vectors.vectors.shape
    assert list(vectors.words) == sorted(set(vectors.words))
    assert all(train.tokenize(w) == [w] for w in vectors.words[:1000])
