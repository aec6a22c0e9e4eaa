"""Train, select, evaluate and export the newsgroup classifier into ``model/``.

``run`` is one function per step: ``load_dataset`` (I/O and validation), ``select_candidate``
(cross-validation on the training split only, over ``candidates``/``build_pipeline``, which are
pure), ``fit_and_export`` (the sparse ONNX graph of ``export_onnx``), ``evaluation_report`` (test
split, used once), ``model_metadata`` (``model.json``, through ``function.model_info.describe``)
and ``write_model`` (atomic).

Run ``python train.py --help`` for options; defaults reproduce the committed model.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import sklearn
from joblib import Parallel, delayed
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from function.inference.session import InferenceSession, load_session, predict
from function.model_info import (
    EXPLAIN_OUTPUTS,
    HEALTH_OUTPUTS,
    INPUT,
    METADATA_FILE,
    MODEL_FILE,
    OUTPUTS,
    VOCABULARY,
    describe,
    sha256_of,
)

#: The label set of the challenge; ``model/model.json`` carries it to the service.
LABELS: tuple[str, ...] = ("baseball", "cryptography", "electronics", "hockey", "politics", "space")
#: One token pattern for scikit-learn (Python ``re``) and onnxruntime (RE2): ASCII only, no ``\b``
#: or ``\w``, whose meaning differs between the two engines on non-ASCII text.
TOKEN_PATTERN = r"[a-z0-9]{2,}"
#: The lower-casing locale of the ONNX graph. "C" exists everywhere, including slim images
#: without ``en_US.UTF-8`` (skl2onnx's default, which fails to load there), and lower-cases
#: A-Z only, which ``ascii_lower`` reproduces on the scikit-learn side.
ONNX_LOCALE = "C"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
MODEL_NAME = "newsgroups-topic"
SEED = 0
CV_FOLDS = 5
BOOTSTRAP_ROUNDS = 1000

ROOT = Path(__file__).resolve().parent


class DataError(ValueError):
    """Training data that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Dataset:
    texts: list[str]
    labels: list[str]
    sha256: str
    path: Path


def load_dataset(path: Path, labels: Sequence[str] = LABELS) -> Dataset:
    """Read a (gzipped) JSONL file of ``{"text", "label"}`` objects, validating every line."""
    raw = path.read_bytes()
    data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    texts: list[str] = []
    targets: list[str] = []
    known = set(labels)
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: malformed JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str):
            raise DataError(f"{where}: 'text' is missing or not a string")
        if label is None:
            raise DataError(f"{where}: 'label' is missing")
        if label not in known:
            raise DataError(f"{where}: unknown label {label!r}; expected one of {sorted(known)}")
        texts.append(text)
        targets.append(label)
    if not texts:
        raise DataError(f"{path}: no examples (the file is empty)")
    return Dataset(texts, targets, sha256_of(raw), path)


# --- candidates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    name: str
    description: str
    build: Callable[[], Pipeline]
    #: Whether ``export_onnx`` can emit its exact sparse graph (unigrams, our token pattern).
    exportable: bool = True


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only, as the ONNX graph's StringNormalizer does under the C locale.

    ``str.lower`` would also map a few non-ASCII letters to ASCII ones ("İ" -> "i̇", the Kelvin
    sign -> "k"), creating tokens the ONNX graph never sees.
    """
    return text.translate(_ASCII_LOWER)


def build_pipeline(classifier: Any, **vectorizer: Any) -> Pipeline:
    """Sublinear TF-IDF on ASCII-lower-cased ASCII tokens followed by ``classifier``."""
    params = {"sublinear_tf": True, "token_pattern": TOKEN_PATTERN, "preprocessor": ascii_lower} | vectorizer
    return Pipeline([("tfidf", TfidfVectorizer(**params)), ("clf", classifier)])


def build_baseline() -> Pipeline:
    """The challenge's baseline: CountVectorizer -> TfidfTransformer -> MultinomialNB on raw text."""
    return Pipeline([("counts", CountVectorizer()), ("tfidf", TfidfTransformer()), ("clf", MultinomialNB())])


def candidates() -> list[Candidate]:
    """Every model compared by cross-validation; the baseline comes first."""
    svc = lambda: LinearSVC(C=1.0, random_state=SEED)  # noqa: E731
    return [
        Candidate("baseline", "Count -> TF-IDF -> MultinomialNB (challenge)", build_baseline, exportable=False),
        Candidate(
            "nb-sublinear",
            "sublinear TF-IDF -> MultinomialNB(alpha=0.01)",
            lambda: build_pipeline(MultinomialNB(alpha=0.01)),
        ),
        Candidate(
            "logreg",
            "sublinear TF-IDF -> LogisticRegression(C=30)",
            lambda: build_pipeline(LogisticRegression(C=30.0, max_iter=3000)),
        ),
        Candidate(
            "sgd-hinge",
            "sublinear TF-IDF -> SGDClassifier(hinge, alpha=1e-4)",
            lambda: build_pipeline(SGDClassifier(alpha=1e-4, random_state=SEED)),
        ),
        Candidate("svc", "sublinear TF-IDF -> LinearSVC(C=1)", lambda: build_pipeline(svc())),
        Candidate(
            "svc-min-df-2", "sublinear TF-IDF (min_df=2) -> LinearSVC(C=1)", lambda: build_pipeline(svc(), min_df=2)
        ),
        Candidate(
            "svc-20k",
            "sublinear TF-IDF (20k terms) -> LinearSVC(C=1)",
            lambda: build_pipeline(svc(), max_features=20_000),
        ),
        Candidate(
            "svc-bigrams",
            "sublinear TF-IDF (1-2 grams, min_df=2) -> LinearSVC(C=1)",
            lambda: build_pipeline(svc(), ngram_range=(1, 2), min_df=2),
            exportable=False,
        ),
    ]


# --- model selection ----------------------------------------------------------------------------


@dataclass
class CvResult:
    name: str
    description: str
    exportable: bool
    accuracy_mean: float
    accuracy_std: float
    macro_f1_mean: float
    vocabulary: int
    fit_seconds: float
    predict_us_per_doc: float
    fold_accuracy: list[float] = field(default_factory=list)


def _fold(
    candidate: Candidate, texts: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray
) -> tuple[float, float, float, float, int]:
    """Fit on one fold: accuracy, macro-F1, fit seconds, predict seconds, vocabulary size."""
    model = candidate.build()
    t0 = time.perf_counter()
    model.fit(texts[train_idx], labels[train_idx])
    t1 = time.perf_counter()
    predicted = model.predict(texts[test_idx])
    t2 = time.perf_counter()
    return (
        float(accuracy_score(labels[test_idx], predicted)),
        float(f1_score(labels[test_idx], predicted, average="macro")),
        t1 - t0,
        t2 - t1,
        len(model.steps[0][1].vocabulary_),
    )


def cross_validate(candidate: Candidate, data: Dataset, folds: int = CV_FOLDS) -> CvResult:
    """Stratified k-fold scores on the training split, plus fit time and predict cost per doc.

    Folds run two at a time (one per core of the reference machine); each is single-threaded.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    texts, labels = np.array(data.texts, dtype=object), np.array(data.labels)
    runs = Parallel(n_jobs=2)(
        delayed(_fold)(candidate, texts, labels, tr, te) for tr, te in splitter.split(texts, labels)
    )
    accs, f1s, fit_s, pred_s, vocabs = (list(column) for column in zip(*runs, strict=True))
    vocab = max(vocabs)
    fit_s, pred_s = sum(fit_s), sum(pred_s)
    return CvResult(
        candidate.name,
        candidate.description,
        candidate.exportable,
        float(np.mean(accs)),
        float(np.std(accs)),
        float(np.mean(f1s)),
        vocab,
        fit_s / folds,
        pred_s / len(texts) * 1e6,
        accs,
    )


def fit_temperature(candidate: Candidate, data: Dataset, folds: int = CV_FOLDS) -> float:
    """Scale for softmax(scale * decision) that minimises out-of-fold log-loss.

    Multinomial models (logistic regression, naive Bayes) already produce a softmax of their
    decision values, so they keep 1.0; margin models (SVM, hinge SGD) get a cross-validated scale.
    """
    model = candidate.build()
    if isinstance(model.steps[-1][1], (LogisticRegression, MultinomialNB)):
        return 1.0
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    scores = cross_val_predict(model, data.texts, data.labels, cv=splitter, method="decision_function", n_jobs=2)
    classes = sorted(set(data.labels))
    truth = np.searchsorted(classes, data.labels)

    def log_loss(scale: float) -> float:
        return float(-log_softmax(scale * scores, axis=1)[np.arange(len(truth)), truth].mean())

    return float(minimize_scalar(log_loss, bounds=(0.01, 100.0), method="bounded").x)


# --- ONNX export ---------------------------------------------------------------------------------


def linear_parts(pipeline: Pipeline) -> tuple[TfidfVectorizer, np.ndarray, np.ndarray]:
    """The vectorizer, weights ``W`` (terms x classes) and bias of a TF-IDF linear pipeline."""
    vectorizer, clf = pipeline.steps[0][1], pipeline.steps[-1][1]
    if not isinstance(vectorizer, TfidfVectorizer) or vectorizer.ngram_range != (1, 1):
        raise ValueError("export_onnx needs a unigram TfidfVectorizer as the first step")
    if vectorizer.token_pattern != TOKEN_PATTERN or vectorizer.preprocessor is not ascii_lower:
        raise ValueError("export_onnx needs the project's token pattern and ascii_lower preprocessor")
    if vectorizer.norm != "l2" or vectorizer.stop_words is not None:
        raise ValueError("export_onnx needs norm='l2' and no stop words")
    if isinstance(clf, MultinomialNB):
        return vectorizer, clf.feature_log_prob_.T, clf.class_log_prior_
    return vectorizer, clf.coef_.T, clf.intercept_


def export_onnx(pipeline: Pipeline, temperature: float = 1.0) -> onnx.ModelProto:
    """Emit a sparse ONNX graph equivalent to ``pipeline`` (sublinear TF-IDF + linear model).

    skl2onnx's stock TF-IDF converter materialises dense vocabulary-sized vectors (counts, log,
    idf, L2 norm, linear layer); this graph works on each document's distinct tokens instead:
    lower-case -> tokenize -> term ids -> Unique (counts per row and term) -> tf-idf weights ->
    per-row scatter-add of ``x * W[term]`` and ``x**2`` -> scores / ||x|| + b -> label, softmax.

    Beside ``label`` and ``probabilities`` it outputs each text's token count and unknown-token
    count (``HEALTH_OUTPUTS``) and, for explanations, values the graph computes anyway: each
    (text, term) pair's row, term id, tf-idf weight ``x`` and ``x * W[term]``, each text's norm,
    the decision values and intercepts (``EXPLAIN_OUTPUTS``), and the terms by id (``VOCABULARY``).
    """
    vectorizer, weights, bias = linear_parts(pipeline)
    classes = [str(c) for c in pipeline.classes_]
    vocab_terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    n_terms = len(vocab_terms)
    # Two ids past the vocabulary, both with idf 0 and weights 0: out-of-vocabulary tokens, and the
    # tokenizer's padding ("", which the token pattern can never match), counted apart.
    unknown, pad = n_terms, n_terms + 1
    idf = np.append(vectorizer.idf_, [0.0, 0.0]).astype(np.float32)
    w_ext = np.vstack([weights, np.zeros((2, weights.shape[1]))]).astype(np.float32)

    def const(name: str, value: Any, dtype: Any = None) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("idf", idf),
        const("weights", w_ext),
        const("bias", np.asarray(bias, np.float32)),
        const("classes", np.array(classes, dtype=object)),
        const("stride", n_terms + 2, np.int64),
        const("pad_col", [[pad]], np.int64),
        const("unknown_id", unknown, np.int64),
        const("pad_id", pad, np.int64),
        const("vocabulary", np.array([*vocab_terms, "", ""], dtype=object)),
        const("one_col", [1], np.int64),
        const("one_f", 1.0, np.float32),
        const("tiny", 1e-30, np.float32),
        const("temperature", temperature, np.float32),
        const("zero_i", 0, np.int64),
        const("one_i", 1, np.int64),
        const("axis0", [0], np.int64),
        const("col_shape", [-1, 1], np.int64),
        const("flat", [-1], np.int64),
        const("n_classes", [len(classes)], np.int64),
    ]
    tf = "log_tf" if vectorizer.sublinear_tf else "tf"
    node = helper.make_node
    nodes = [
        node(
            "StringNormalizer",
            ["text"],
            ["lower"],
            case_change_action="LOWER",
            is_case_sensitive=False,
            locale=ONNX_LOCALE,
        ),
        node(
            "Tokenizer",
            ["lower"],
            ["words"],
            domain="com.microsoft",
            pad_value="",
            mark=False,
            mincharnum=1,
            tokenexp=TOKEN_PATTERN,
        ),
        node(
            "LabelEncoder",
            ["words"],
            ["term_ids"],
            domain="ai.onnx.ml",
            keys_strings=[*vocab_terms, ""],
            values_int64s=[*range(n_terms), pad],
            default_int64=unknown,
        ),
        # NOTE: a pad column keeps every row non-empty; Tokenizer yields shape (N, 0) when no
        # document has a token, and Unique/Scatter must still see each row.
        node("Shape", ["text"], ["n_rows"]),
        node("Unsqueeze", ["one_i", "axis0"], ["one_i_1d"]),
        node("Concat", ["n_rows", "one_i_1d"], ["pad_shape"], axis=0),
        node("Expand", ["pad_col", "pad_shape"], ["pad_ids"]),
        node("Concat", ["term_ids", "pad_ids"], ["ids"], axis=1),
        node("Squeeze", ["n_rows", "axis0"], ["n_scalar"]),
        node("Range", ["zero_i", "n_scalar", "one_i"], ["rows"]),
        node("Mul", ["rows", "stride"], ["row_offset_flat"]),
        node("Reshape", ["row_offset_flat", "col_shape"], ["row_offset"]),
        node("Add", ["ids", "row_offset"], ["keys_2d"]),
        node("Reshape", ["keys_2d", "flat"], ["keys"]),
        node("Unique", ["keys"], ["uniq", "", "", "counts"], sorted=1),
        node("Div", ["uniq", "stride"], ["row"]),
        node("Mod", ["uniq", "stride"], ["term"]),
        node("Cast", ["counts"], ["tf"], to=TensorProto.FLOAT),
        node("Log", ["tf"], ["log_counts"]),
        node("Add", ["log_counts", "one_f"], ["log_tf"]),
        node("Gather", ["idf", "term"], ["term_idf"]),
        node("Mul", [tf, "term_idf"], ["x"]),
        node("Mul", ["x", "x"], ["x2"]),
        node("Reshape", ["x", "col_shape"], ["x_col"]),
        node("Gather", ["weights", "term"], ["term_weights"], axis=0),
        node("Mul", ["term_weights", "x_col"], ["contrib"]),
        node("Reshape", ["row", "col_shape"], ["row_idx"]),
        node("Concat", ["n_rows", "n_classes"], ["score_shape"], axis=0),
        node(
            "ConstantOfShape",
            ["score_shape"],
            ["score_zeros"],
            value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0]),
        ),
        node(
            "ConstantOfShape", ["n_rows"], ["norm_zeros"], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])
        ),
        node("ScatterND", ["score_zeros", "row_idx", "contrib"], ["raw_scores"], reduction="add"),
        node("ScatterND", ["norm_zeros", "row_idx", "x2"], ["sq_norm"], reduction="add"),
        node("Max", ["sq_norm", "tiny"], ["safe_sq_norm"]),
        node("Sqrt", ["safe_sq_norm"], ["norm"]),
        node("Reshape", ["norm", "col_shape"], ["norm_col"]),
        node("Div", ["raw_scores", "norm_col"], ["scaled"]),
        node("Add", ["scaled", "bias"], ["decision"]),
        node("ArgMax", ["decision"], ["best"], axis=1, keepdims=0),
        node("Gather", ["classes", "best"], ["label"]),
        node("Mul", ["decision", "temperature"], ["logits"]),
        node("Softmax", ["logits"], ["probabilities"], axis=1),
        # model health: tokens and unknown tokens per text (padding ids counted, then taken off)
        node("Equal", ["term", "unknown_id"], ["is_unknown"]),
        node("Cast", ["is_unknown"], ["is_unknown_f"], to=TensorProto.FLOAT),
        node("Mul", ["is_unknown_f", "tf"], ["unknown_counts"]),
        node("ScatterND", ["norm_zeros", "row_idx", "unknown_counts"], ["unknown_f"], reduction="add"),
        node("Cast", ["unknown_f"], [HEALTH_OUTPUTS[1]], to=TensorProto.INT64),
        node("Equal", ["term", "pad_id"], ["is_pad"]),
        node("Cast", ["is_pad"], ["is_pad_f"], to=TensorProto.FLOAT),
        node("Mul", ["is_pad_f", "tf"], ["pad_counts"]),
        node("ScatterND", ["norm_zeros", "row_idx", "pad_counts"], ["pads_f"], reduction="add"),
        node("Shape", ["ids"], ["ids_shape"]),
        node("Gather", ["ids_shape", "one_col"], ["columns"]),
        node("Cast", ["columns"], ["columns_f"], to=TensorProto.FLOAT),
        node("Sub", ["columns_f", "pads_f"], ["tokens_f"]),
        node("Cast", ["tokens_f"], [HEALTH_OUTPUTS[0]], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT, TensorProto.STRING, ["N"])],
        [
            helper.make_tensor_value_info(OUTPUTS[0], TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["N", len(classes)]),
            helper.make_tensor_value_info(HEALTH_OUTPUTS[0], TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info(HEALTH_OUTPUTS[1], TensorProto.INT64, ["N"]),
            # explanations: the graph's own intermediate values (no node runs for them)
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[0], TensorProto.INT64, ["K"]),
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[1], TensorProto.INT64, ["K"]),
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[2], TensorProto.FLOAT, ["K"]),
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[3], TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[4], TensorProto.FLOAT, ["K", len(classes)]),
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[5], TensorProto.FLOAT, ["N", len(classes)]),
            helper.make_tensor_value_info(EXPLAIN_OUTPUTS[6], TensorProto.FLOAT, [len(classes)]),
            helper.make_tensor_value_info(VOCABULARY, TensorProto.STRING, [n_terms + 2]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="train.py",
        opset_imports=[
            helper.make_opsetid("", 18),
            helper.make_opsetid("ai.onnx.ml", 3),
            helper.make_opsetid("com.microsoft", 1),
        ],
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def onnx_predict(session: InferenceSession, texts: Sequence[str], batch: int = 256) -> tuple[list[str], np.ndarray]:
    """Labels and probabilities of ``texts``, ``batch`` texts a call so that memory stays bounded."""
    labels: list[str] = []
    probabilities = []
    for start in range(0, len(texts), batch):
        out = predict(session, texts[start : start + batch])
        labels.extend(out.labels)
        probabilities.append(out.probabilities)
    return labels, np.vstack(probabilities)


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = LABELS, rounds: int = BOOTSTRAP_ROUNDS
) -> dict[str, Any]:
    """Accuracy, per-class and averaged precision/recall/F1, confusion matrix, bootstrap 95% CIs."""
    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    averages = {}
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(truth, predicted, labels=labels, average=avg, zero_division=0)
        averages[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    matrix = confusion_matrix(truth, predicted, labels=labels)
    return {
        "n": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "averages": averages,
        "confusion_matrix": {"labels": labels, "rows_true_cols_predicted": matrix.tolist()},
        "bootstrap_95ci": bootstrap_ci(truth, predicted, labels, rounds),
    }


def bootstrap_ci(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str], rounds: int) -> dict[str, Any]:
    """Percentile bootstrap (resampling test documents) for accuracy and macro-F1."""
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[x] for x in truth])
    p = np.array([index[x] for x in predicted])
    k = len(labels)
    rng = np.random.default_rng(SEED)
    accs, f1s = np.empty(rounds), np.empty(rounds)
    for r in range(rounds):
        sample = rng.integers(0, len(t), len(t))
        ts, ps = t[sample], p[sample]
        cm = np.bincount(ts * k + ps, minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        denom = cm.sum(axis=0) + cm.sum(axis=1)
        f1s[r] = np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0))
        accs[r] = tp.sum() / len(ts)
    return {
        "rounds": rounds,
        "seed": SEED,
        "accuracy": [float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))],
        "macro_f1": [float(np.percentile(f1s, 2.5)), float(np.percentile(f1s, 97.5))],
    }


def parity(
    sk_labels: Sequence[str], onnx_labels: Sequence[str], sk_scores: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Agreement between scikit-learn and ONNX labels, with the margin of every disagreement."""
    disagreements = []
    for i, (a, b) in enumerate(zip(sk_labels, onnx_labels, strict=True)):
        if a != b:
            top = np.sort(sk_scores[i])[::-1]
            disagreements.append({"index": i, "sklearn": a, "onnx": b, "sklearn_top2_margin": float(top[0] - top[1])})
    agree = len(sk_labels) - len(disagreements)
    return {"agree": agree, "total": len(sk_labels), "rate": agree / len(sk_labels), "disagreements": disagreements}


def decision_scores(pipeline: Pipeline, texts: Sequence[str]) -> np.ndarray:
    clf = pipeline.steps[-1][1]
    method = pipeline.decision_function if hasattr(clf, "decision_function") else pipeline.predict_log_proba
    return np.asarray(method(texts))


# --- calibration ---------------------------------------------------------------------------------

#: Equal-width bins of top-class confidence for the expected calibration error.
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class CalibrationBin:
    """Texts whose top-class probability lies in ``(lower, upper]`` (the first bin includes 0)."""

    lower: float
    upper: float
    count: int
    #: Mean top-class probability and share of correct labels; None when the bin is empty.
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Calibration:
    """Expected (count-weighted mean) and maximum |accuracy - confidence| over the bins."""

    n: int
    ece: float
    mce: float
    bins: tuple[CalibrationBin, ...]


def calibration(confidences: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> Calibration:
    """Reliability of top-class probabilities: ECE and MCE over ``bins`` equal-width bins of [0, 1]."""
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.ndim != 1 or conf.shape != hit.shape or not len(conf):
        raise ValueError("confidences and correct must be non-empty 1-d arrays of the same length")
    edges = np.arange(bins + 1) / bins
    which = np.digitize(conf, edges[1:-1], right=True)  # bin b holds edges[b] < c <= edges[b + 1]
    rows, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        mean_conf = float(conf[members].mean()) if count else None
        accuracy = float(hit[members].mean()) if count else None
        if mean_conf is not None and accuracy is not None:
            gap = abs(accuracy - mean_conf)
            ece += gap * count / len(conf)
            mce = max(mce, gap)
        rows.append(CalibrationBin(float(edges[b]), float(edges[b + 1]), count, mean_conf, accuracy))
    return Calibration(len(conf), ece, mce, tuple(rows))


def rescale(probabilities: np.ndarray, factor: float) -> np.ndarray:
    """softmax(factor * logits) from softmax(logits): ``p**factor``, renormalised per row."""
    logs = factor * np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), 1e-300))
    scaled = np.exp(logs - logs.max(axis=1, keepdims=True))
    return np.asarray(scaled / scaled.sum(axis=1, keepdims=True))


def calibration_report(
    truth: Sequence[str], predicted: Sequence[str], probabilities: np.ndarray, scale: float
) -> dict[str, Any]:
    """Calibration of the served probabilities, and of the same graph's softmax without the fitted scale."""
    correct = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    served = calibration(probabilities.max(axis=1), correct)
    unscaled = calibration(rescale(probabilities, 1.0 / scale).max(axis=1), correct)
    return {
        "bins": len(served.bins),
        "binning": "equal-width bins of the top-class probability, (lower, upper]",
        "softmax_scale": scale,
        "served": asdict(served),
        "unscaled": asdict(unscaled),
    }


# --- reports and artefacts ---------------------------------------------------------------------


def save_confusion_png(matrix: list[list[int]], labels: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.array(matrix)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=100)
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > values.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def save_reliability_png(calib: dict[str, Any], path: Path, title: str) -> None:
    """Reliability diagram (accuracy against confidence per bin) above the texts per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6.5), dpi=100, sharex=True, height_ratios=[3, 1])
    width = 1.0 / calib["bins"]
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    served, unscaled = calib["served"], calib["unscaled"]
    filled = [b for b in served["bins"] if b["count"]]
    top.bar(
        [b["lower"] for b in filled],
        [b["accuracy"] for b in filled],
        width=width,
        align="edge",
        alpha=0.6,
        edgecolor="black",
        label=f"served, fitted scale (ECE {served['ece']:.4f})",
    )
    filled = [b for b in unscaled["bins"] if b["count"]]
    top.plot(
        [b["confidence"] for b in filled],
        [b["accuracy"] for b in filled],
        "o-",
        color="tab:orange",
        label=f"softmax scale 1 (ECE {unscaled['ece']:.4f})",
    )
    lowers = np.array([b["lower"] for b in served["bins"]])
    bottom.bar(lowers, [b["count"] for b in served["bins"]], width=width / 2, align="edge", label="served")
    counts = [b["count"] for b in unscaled["bins"]]
    bottom.bar(lowers + width / 2, counts, width=width / 2, align="edge", color="tab:orange", label="scale 1")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy in the bin", title=title)
    top.legend(loc="upper left")
    bottom.set(yscale="log", xlabel="top-class probability (confidence)", ylabel="texts")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable twin of ``evaluation.json``."""
    served, base = report["served"], report["baseline"]
    ci = served["bootstrap_95ci"]
    lines = [
        f"# Evaluation of `{report['model']}` on the test split",
        "",
        f"Selected by {CV_FOLDS}-fold stratified cross-validation on the training split "
        f"({report['train_size']} posts); evaluated once on the test split ({served['n']} posts) by "
        "running `model/model.onnx` with onnxruntime. Regenerate with `make train`.",
        "",
        "## Headline",
        "",
        "| model | accuracy | 95% CI | macro-F1 | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for name, ev in (("served: " + report["model"], served), ("baseline (challenge)", base)):
        c = ev["bootstrap_95ci"]
        lines.append(
            f"| {name} | {ev['accuracy']:.4f} | {c['accuracy'][0]:.4f}–{c['accuracy'][1]:.4f} | "
            f"{ev['averages']['macro']['f1']:.4f} | {c['macro_f1'][0]:.4f}–{c['macro_f1'][1]:.4f} |"
        )
    lines += [
        "",
        f"Bootstrap: {ci['rounds']} resamples of the test set, seed {ci['seed']}, percentile intervals.",
        "",
        "## Per class (served model)",
        "",
        "| label | precision | recall | F1 | support | baseline F1 |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in served["per_class"].items():
        lines.append(
            f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
            f"{row['support']} | {base['per_class'][label]['f1']:.4f} |"
        )
    lines += ["", "| average | precision | recall | F1 |", "|---|---|---|---|"]
    for avg, row in served["averages"].items():
        lines.append(f"| {avg} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} |")
    cm = served["confusion_matrix"]
    lines += [
        "",
        "## Confusion matrix (rows: true, columns: predicted)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "| true \\ predicted | " + " | ".join(cm["labels"]) + " |",
        "|---" * (len(cm["labels"]) + 1) + "|",
    ]
    for label, row in zip(cm["labels"], cm["rows_true_cols_predicted"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        f"## Cross-validation on the training split ({CV_FOLDS} folds)",
        "",
        "| candidate | CV accuracy | ± std | CV macro-F1 | terms | fit s | predict µs/doc | exportable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cross_validation"]:
        mark = " **(selected)**" if row["name"] == report["model_candidate"] else ""
        lines.append(
            f"| {row['name']}{mark}: {row['description']} | {row['accuracy_mean']:.4f} | "
            f"{row['accuracy_std']:.4f} | {row['macro_f1_mean']:.4f} | {row['vocabulary']} | "
            f"{row['fit_seconds']:.2f} | {row['predict_us_per_doc']:.1f} | "
            f"{'yes' if row['exportable'] else 'no'} |"
        )
    par = report["parity"]
    lines += [
        "",
        "Predict cost is scikit-learn's batch predict time per held-out document; "
        "`make bench-model` measures the ONNX cost per single-document call.",
        "",
        "## ONNX / scikit-learn parity on the test split",
        "",
        f"{par['agree']} of {par['total']} labels agree ({par['rate']:.4%}).",
    ]
    for d in par["disagreements"]:
        lines.append(
            f"- document {d['index']}: scikit-learn `{d['sklearn']}`, ONNX `{d['onnx']}`, "
            f"top-2 decision margin {d['sklearn_top2_margin']:.2e} (a float32/float64 near-tie)"
        )
    lines += calibration_markdown(report["calibration"])
    return "\n".join(lines) + "\n"


def calibration_markdown(calib: dict[str, Any]) -> list[str]:
    """The calibration section of ``evaluation.md``: ECE, MCE and the per-bin table."""
    served, unscaled = calib["served"], calib["unscaled"]

    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    lines = [
        "",
        "## Calibration of the served probabilities",
        "",
        f"The top-class probability (`scores`) of `model/model.onnx` on the {served['n']} test posts, in "
        f"{calib['bins']} equal-width bins (lower, upper]: ECE = Σ (texts in bin / all texts) × "
        "|accuracy − mean confidence|, MCE = the largest of those gaps over the non-empty bins.",
        "",
        "| softmax | ECE | MCE |",
        "|---|---|---|",
        f"| served: fitted scale {calib['softmax_scale']:.3f} | **{served['ece']:.4f}** | {served['mce']:.4f} |",
        f"| the same graph's decision values, scale 1 | {unscaled['ece']:.4f} | {unscaled['mce']:.4f} |",
        "",
        "![reliability diagram](reliability.png)",
        "",
        "| confidence | texts | mean confidence | accuracy "
        "| texts (scale 1) | mean confidence (scale 1) | accuracy (scale 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, u in zip(served["bins"], unscaled["bins"], strict=True):
        lines.append(
            f"| {s['lower']:.1f}–{s['upper']:.1f} | {s['count']} | {cell(s['confidence'])} | {cell(s['accuracy'])} | "
            f"{u['count']} | {cell(u['confidence'])} | {cell(u['accuracy'])} |"
        )
    return lines


def write_model_dir(out_dir: Path, files: dict[str, bytes], extra: Callable[[Path], None]) -> None:
    """Write every artefact into a temporary sibling folder, then swap it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        extra(staging)
        old = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


# --- the steps of a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Every candidate's cross-validation scores, and the one chosen to be served."""

    results: list[CvResult]
    best: CvResult
    candidate: Candidate


@dataclass(frozen=True)
class Trained:
    """The chosen pipeline fitted on the whole training split, and its ONNX graph."""

    pipeline: Pipeline
    temperature: float
    onnx: bytes


def choose_candidates(names: Sequence[str] | None) -> list[Candidate]:
    """The candidates named on the command line, in ``candidates()`` order; all of them by default."""
    pool = [c for c in candidates() if names is None or c.name in names]
    unknown = set(names or []) - {c.name for c in pool}
    if unknown:
        raise SystemExit(f"unknown candidates: {sorted(unknown)}")
    return pool


def select_candidate(pool: Sequence[Candidate], train: Dataset, folds: int) -> Selection:
    """Cross-validate every candidate; the exportable one with the best accuracy (then macro-F1) wins."""
    results = []
    for cand in pool:
        res = cross_validate(cand, train, folds)
        results.append(res)
        log(
            f"cv {cand.name:14s} accuracy {res.accuracy_mean:.4f} ± {res.accuracy_std:.4f}  "
            f"macro-F1 {res.macro_f1_mean:.4f}  {res.vocabulary} terms  {res.predict_us_per_doc:.0f} µs/doc"
        )
    eligible = [r for r in results if r.exportable]
    if not eligible:
        raise SystemExit("no exportable candidate selected; add one of the sublinear TF-IDF models")
    best = max(eligible, key=lambda r: (r.accuracy_mean, r.macro_f1_mean))
    chosen = next(c for c in pool if c.name == best.name)
    log(f"selected {chosen.name} by cross-validated accuracy")
    return Selection(results, best, chosen)


def fit_and_export(candidate: Candidate, train: Dataset, folds: int) -> Trained:
    """Fit the softmax scale out of fold, then the pipeline on all of ``train``; export both to ONNX."""
    temperature = fit_temperature(candidate, train, folds)
    pipeline = candidate.build().fit(train.texts, train.labels)
    model = export_onnx(pipeline, temperature).SerializeToString()
    log(f"exported ONNX graph ({len(model) / 1e6:.2f} MB, softmax scale {temperature:.3f})")
    return Trained(pipeline, temperature, model)


def evaluation_report(
    selection: Selection, trained: Trained, train: Dataset, test: Dataset, rounds: int
) -> dict[str, Any]:
    """``evaluation.json``: the served ONNX graph and the baseline on the test split, parity, the CV table."""
    onnx_labels, probabilities = onnx_predict(load_session(trained.onnx), test.texts)
    baseline = build_baseline().fit(train.texts, train.labels)
    served = evaluate(test.labels, onnx_labels, rounds=rounds)
    base = evaluate(test.labels, list(baseline.predict(test.texts)), rounds=rounds)
    pipeline = trained.pipeline
    sk_labels = list(pipeline.predict(test.texts))
    agreement = parity(sk_labels, onnx_labels, decision_scores(pipeline, test.texts), list(pipeline.classes_))
    log(
        f"test accuracy {served['accuracy']:.4f} macro-F1 {served['averages']['macro']['f1']:.4f} "
        f"(baseline {base['accuracy']:.4f}); ONNX/sklearn agreement {agreement['rate']:.4%}"
    )
    return {
        "model": MODEL_NAME,
        "model_candidate": selection.candidate.name,
        "model_sha256": sha256_of(trained.onnx),
        "train_size": len(train.texts),
        "served": served,
        "baseline": base,
        "parity": agreement,
        "cross_validation": [vars(r) for r in selection.results],
        "calibration": calibration_report(test.labels, onnx_labels, probabilities, trained.temperature),
    }


def model_metadata(
    version: str, selection: Selection, trained: Trained, train: Dataset, test: Dataset, report: dict[str, Any]
) -> dict[str, Any]:
    """``model.json``: the service's contract (``describe``), then how the model was made and scored."""
    served, base = report["served"], report["baseline"]
    # NOTE: ``describe`` writes the keywords after ``metrics`` in the order given, before the
    # metrics; this is the order of the committed model.json, so keep it.
    return describe(
        name=MODEL_NAME,
        version=version,
        labels=[str(c) for c in trained.pipeline.classes_],
        model=trained.onnx,
        metrics={
            "accuracy": served["accuracy"],
            "macro_f1": served["averages"]["macro"]["f1"],
            "accuracy_95ci": served["bootstrap_95ci"]["accuracy"],
            "macro_f1_95ci": served["bootstrap_95ci"]["macro_f1"],
            "baseline_accuracy": base["accuracy"],
            "cv_accuracy": selection.best.accuracy_mean,
        },
        description=selection.candidate.description,
        vocabulary_size=len(trained.pipeline.steps[0][1].vocabulary_),
        softmax_scale=trained.temperature,
        token_pattern=TOKEN_PATTERN,
        training_data={
            "path": "data/train.jsonl.gz",
            "sha256": train.sha256,
            "examples": len(train.texts),
            "label_counts": {str(c): train.labels.count(c) for c in trained.pipeline.classes_},
        },
        test_data={"path": "data/test.jsonl.gz", "sha256": test.sha256, "examples": len(test.texts)},
        libraries=libraries(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def libraries() -> dict[str, str]:
    """The versions that produced the model."""
    import onnxruntime  # already loaded, by function.inference.session, which configures it first

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def write_model(out_dir: Path, trained: Trained, metadata: dict[str, Any], report: dict[str, Any]) -> None:
    """The model folder: graph, ``model.json``, the evaluation in JSON and Markdown, the confusion matrix."""
    files = {
        MODEL_FILE: trained.onnx,
        METADATA_FILE: json_bytes(metadata),
        "evaluation.json": json_bytes(report),
        "evaluation.md": render_markdown(report).encode(),
    }

    def pictures(folder: Path) -> None:
        save_confusion_png(
            report["served"]["confusion_matrix"]["rows_true_cols_predicted"],
            metadata["labels"],
            folder / "confusion_matrix.png",
            f"{MODEL_NAME} on the test split",
        )
        save_reliability_png(
            report["calibration"], folder / "reliability.png", f"{MODEL_NAME}: reliability on the test split"
        )

    write_model_dir(out_dir, files, pictures)


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--train", type=Path, default=ROOT / "data/train.jsonl.gz", help="training JSONL(.gz)")
    parser.add_argument("--test", type=Path, default=ROOT / "data/test.jsonl.gz", help="test JSONL(.gz)")
    parser.add_argument("--out", type=Path, default=ROOT / "model", help="output folder")
    parser.add_argument("--version", default="1.0.0", help="model version written to model.json")
    parser.add_argument(
        "--candidates",
        nargs="+",
        metavar="NAME",
        help=f"compare only these candidates (default: all of {[c.name for c in candidates()]})",
    )
    parser.add_argument("--folds", type=int, default=CV_FOLDS, help="cross-validation folds")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_ROUNDS, help="bootstrap resamples")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, select, fit and export, evaluate, describe, write; returns the evaluation report."""
    started = time.perf_counter()
    train, test = load_dataset(args.train), load_dataset(args.test)
    log(f"loaded {len(train.texts)} training and {len(test.texts)} test posts")
    selection = select_candidate(choose_candidates(args.candidates), train, args.folds)
    trained = fit_and_export(selection.candidate, train, args.folds)
    report = evaluation_report(selection, trained, train, test, args.bootstrap)
    metadata = model_metadata(args.version, selection, trained, train, test, report)
    write_model(args.out, trained, metadata, report)
    log(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (DataError, UnicodeDecodeError, OSError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
