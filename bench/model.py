"""``python -m bench.model``: the served ONNX graph against an earlier one and a stock export, one document a call.

Rows: (1) ``model/model.onnx``, the sparse graph the service runs; (2) ``model/model.onnx`` as
committed at ``--before`` (git history), the graph it is compared with for cost; (3) the challenge
baseline (``train.build_baseline()`` fitted on the training split) exported by skl2onnx's stock
converters. Each is timed on single-document ``session.run`` calls over the test texts in one
thread with a one-thread onnxruntime session, passes interleaved, and scored on the test split.
Writes ``bench/MODEL.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.pipeline import Pipeline

import train
from bench import machine
from bench.data import committed_model
from bench.paths import BENCH, EVALUATION, MODEL_PATH, TEST_DATA, TRAIN_DATA
from bench.stats import percentile_ms
from bench.tables import markdown_table, publish
from function.inference.session import load_session
from function.model_info import HEALTH_OUTPUTS, INPUT, OUTPUTS

SERVED = frozenset(OUTPUTS + HEALTH_OUTPUTS)
#: The commit whose model/model.onnx the served graph's cost is compared with: sublinear TF-IDF and a
#: hinge-loss SGD classifier trained on the posts as given.
BEFORE = "2048dd8"

WARM_UP_DOCS = 50


@dataclass(frozen=True)
class Row:
    name: str
    size_mb: float
    p50_ms: float
    p99_ms: float
    docs_per_second: float
    accuracy_onnx: float
    accuracy_sklearn: float | None


def time_calls(session: ort.InferenceSession, texts: Sequence[str]) -> tuple[list[float], float]:
    """Seconds of each one-document call over ``texts``, and the wall time of the whole loop."""
    name = session.get_inputs()[0].name
    # The served graph also offers the values explanations are made of: a call asks only for what
    # the service's every call asks for. Stock exports have only their own outputs.
    outputs = [o.name for o in session.get_outputs() if o.name in SERVED] or None
    seconds: list[float] = []
    started = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        session.run(outputs, {name: np.array([text], dtype=object)})
        seconds.append(time.perf_counter() - t0)
    return seconds, time.perf_counter() - started


def single_doc_seconds(
    sessions: Sequence[ort.InferenceSession], texts: Sequence[str], passes: int
) -> list[tuple[list[float], float]]:
    """Per session: every call's seconds and docs/s. Passes alternate between the sessions, so
    that a noisy moment on the machine does not land on one model only."""
    for session in sessions:
        time_calls(session, texts[:WARM_UP_DOCS])
    calls: list[list[float]] = [[] for _ in sessions]
    wall = [0.0 for _ in sessions]
    for _ in range(passes):
        for i, session in enumerate(sessions):
            seconds, elapsed = time_calls(session, texts)
            calls[i].extend(seconds)
            wall[i] += elapsed
    return [(c, len(c) / w) for c, w in zip(calls, wall, strict=True)]


def onnx_accuracy(session: ort.InferenceSession, texts: Sequence[str], truth: Sequence[str]) -> float:
    """Accuracy of the graph's first output (the label) over ``texts``, in batches of 256."""
    name, label = session.get_inputs()[0].name, session.get_outputs()[0].name
    predicted: list[str] = []
    for start in range(0, len(texts), 256):
        [out] = session.run([label], {name: np.array(texts[start : start + 256], dtype=object)})
        predicted.extend(str(x) for x in out)
    return float(np.mean(np.array(predicted) == np.array(truth)))


@dataclass(frozen=True)
class Subject:
    name: str
    model_bytes: bytes
    sklearn_accuracy: float | None


def measure(subjects: Sequence[Subject], test: train.Dataset, passes: int) -> list[Row]:
    sessions = [load_session(s.model_bytes) for s in subjects]
    timings = single_doc_seconds(sessions, test.texts, passes)
    return [
        Row(
            subject.name,
            len(subject.model_bytes) / 1e6,
            percentile_ms(seconds, 50),
            percentile_ms(seconds, 99),
            rate,
            onnx_accuracy(session, test.texts, test.labels),
            subject.sklearn_accuracy,
        )
        for subject, session, (seconds, rate) in zip(subjects, sessions, timings, strict=True)
    ]


def fitted(pipeline: Pipeline, data: train.Dataset) -> Pipeline:
    return pipeline.fit(data.texts, data.labels)


def export_stock_onnx(pipeline: Pipeline) -> onnx.ModelProto:
    """Export with skl2onnx's stock converters (dense TF-IDF), lower-casing in ``train.ONNX_LOCALE``."""
    text_steps = [step for _, step in pipeline.steps if isinstance(step, CountVectorizer)]
    clf = pipeline.steps[-1][1]
    options: dict[int, dict[str, Any]] = {id(step): {"locale": train.ONNX_LOCALE} for step in text_steps}
    options[id(clf)] = {"zipmap": False} if hasattr(clf, "predict_proba") else {"nocl": False}
    model: onnx.ModelProto = to_onnx(
        pipeline,
        initial_types=[(INPUT, StringTensorType([None]))],
        options=options,
        target_opset={"": 18, "ai.onnx.ml": 3},
    )
    return model


def sklearn_accuracy(pipeline: Pipeline, test: train.Dataset) -> float:
    return float(np.mean(pipeline.predict(test.texts) == np.array(test.labels)))


def render(rows: list[Row], passes: int, n_docs: int) -> str:
    served, before, baseline = rows
    table = markdown_table(
        ["model", "ONNX MB", "p50 ms", "p99 ms", "docs/s", "accuracy (ONNX)", "accuracy (scikit-learn)"],
        [
            [
                r.name,
                f"{r.size_mb:.2f}",
                f"{r.p50_ms:.3f}",
                f"{r.p99_ms:.3f}",
                f"{r.docs_per_second:.0f}",
                f"{r.accuracy_onnx:.4f}",
                "–" if r.accuracy_sklearn is None else f"{r.accuracy_sklearn:.4f}",
            ]
            for r in rows
        ],
    )
    speed = served.docs_per_second / baseline.docs_per_second
    points = (served.accuracy_onnx - baseline.accuracy_onnx) * 100
    cost = before.docs_per_second / served.docs_per_second
    return "\n".join(
        [
            "# Model benchmark: the served graph, the graph before it, and a stock skl2onnx export",
            "",
            f"Machine: {machine.describe()}.",
            "",
            f"Single-document `session.run` calls over the {n_docs} test texts ({passes} pass(es), "
            f"alternating between the models, after {WARM_UP_DOCS} warm-up calls each), one Python thread, "
            "onnxruntime session with 1 intra-op and 1 inter-op thread (`function.inference.session.load_session`, "
            "as the service). Accuracy on "
            "the test split: of the ONNX graph as timed, and of the scikit-learn pipeline it came from. "
            "Regenerate with `make bench-model` (`python -m bench.model`).",
            "",
            table,
            "",
            f"**The served model is {speed:.1f}x as fast as the challenge baseline per document "
            f"(p50 {served.p50_ms:.3f} ms vs {baseline.p50_ms:.3f} ms) while {points:+.1f} accuracy points "
            f"more accurate** ({served.accuracy_onnx:.4f} vs {baseline.accuracy_onnx:.4f}). "
            f"`model/model.onnx` is {served.size_mb:.2f} MB.",
            "",
            f"**Cost per text: {cost:.2f}x the graph before it** (docs/s {served.docs_per_second:.0f} vs "
            f"{before.docs_per_second:.0f}; p50 {served.p50_ms:.3f} ms vs {before.p50_ms:.3f} ms), in the same "
            "interleaved run; the target is at most 2x.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the test texts")
    parser.add_argument("--before", default=BEFORE, help="the commit whose model/model.onnx is timed beside")
    parser.add_argument("--out", type=Path, default=BENCH / "MODEL.md", help="where to write the table")
    args = parser.parse_args(argv)
    ort.set_default_logger_severity(3)  # stock graphs declare batch size 1; silence the shape warnings

    train_set, test = train.load_dataset(TRAIN_DATA), train.load_dataset(TEST_DATA)
    candidate = json.loads(EVALUATION.read_text())["model_candidate"]
    baseline = fitted(train.build_baseline(), train_set)
    served_sk = sklearn_accuracy(train.refit_served(MODEL_PATH.parent, train_set), test)
    subjects = [
        Subject(f"served: model/model.onnx ({candidate}, sparse graph)", MODEL_PATH.read_bytes(), served_sk),
        Subject(f"before: model/model.onnx at {args.before} (sparse graph)", committed_model(args.before), None),
        Subject(
            "baseline (challenge), stock skl2onnx",
            export_stock_onnx(baseline).SerializeToString(),
            sklearn_accuracy(baseline, test),
        ),
    ]
    rows = measure(subjects, test, args.passes)
    report = render(rows, args.passes, len(test.texts))
    publish(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
