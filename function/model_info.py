"""The contract between ``train.py`` and the service: the model folder, its files and ``model.json``.

``train.py`` writes ``model.json`` with ``describe``; the service reads it with ``load_model_info``
and the model's bytes with ``read_verified_model``. Nothing here imports a heavy library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from function.errors import StartupError
from function.jsonio import loads

MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"

#: The ONNX graph's interface: one string tensor in, a label and one probability per label out.
INPUT = "text"
OUTPUTS = ("label", "probabilities")
#: Per text: its tokens, and those of them the vocabulary does not know (int64 [N] each).
HEALTH_OUTPUTS = ("tokens", "unknown_tokens")
#: For explanations, values the graph computes anyway. Per (text, term) pair K: the text's row and the
#: term's id (int64 [K] each), the term's tf-idf weight ``x`` (float [K]), ``x`` times the term's
#: coefficients and the count times the term's projected vector (float [K, labels] each); per text, the
#: inverse of its evidence-scaled norm and of its mean's denominator (float [N] each) and its decision
#: values (float [N, labels]); then the intercepts (float [labels]). A term's contribution to a label is
#: ``tfidf_contribution * inverse_norm + vector_contribution * inverse_mean_denominator``; a label's
#: decision value is its intercept plus the contributions of the text's terms.
EXPLAIN_OUTPUTS = (
    "row",
    "term",
    "x",
    "tfidf_contribution",
    "vector_contribution",
    "inverse_norm",
    "inverse_mean_denominator",
    "decision",
    "bias",
)
#: The model's metadata key that holds its terms, by id, one a line; a token no term matches is unknown.
VOCABULARY = "vocabulary"

#: The keys every ``model.json`` has, and their JSON types; ``/model`` documents them.
REQUIRED: Mapping[str, type] = {
    "name": str,
    "version": str,
    "labels": list,
    "sha256": str,
    "input": dict,
    "outputs": dict,
    "metrics": dict,
}


class ModelError(StartupError):
    """The model folder cannot be served."""


def sha256_of(data: bytes) -> str:
    # NOTE: imported here: hashlib loads OpenSSL (about 4 MB resident), which the inference workers,
    # importing this module for INPUT and OUTPUTS, would otherwise each carry for nothing.
    import hashlib

    return hashlib.sha256(data).hexdigest()


def describe(
    *,
    name: str,
    version: str,
    description: str,
    labels: Sequence[str],
    model: bytes,
    metrics: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The ``model.json`` of a model: the required keys, computed where they can be, then ``extra``."""
    info: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": description,
        "labels": list(labels),
        "input": {"name": INPUT, "type": "string", "shape": ["N"]},
        "outputs": {
            "label": {"name": OUTPUTS[0], "type": "string", "shape": ["N"]},
            "probabilities": {"name": OUTPUTS[1], "type": "float32", "shape": ["N", len(labels)]},
        },
        "sha256": sha256_of(model),
        "size_bytes": len(model),
    }
    info.update(extra)
    info["metrics"] = dict(metrics)
    check(info, "model.json")
    return info


def check(info: Any, where: str) -> None:
    """Raise ModelError unless ``info`` has every required key with its type, and labels are strings."""
    if not isinstance(info, dict):
        raise ModelError(f"{where} is not a JSON object")
    missing = [key for key in REQUIRED if key not in info]
    if missing:
        raise ModelError(f"{where} lacks {missing}")
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(info[key], kind)]
    if wrong:
        raise ModelError(f"{where}: {wrong} have the wrong type")
    if not info["labels"] or not all(isinstance(x, str) for x in info["labels"]):
        raise ModelError(f"{where}: 'labels' must be a non-empty list of strings")


def load_model_info(path: Path) -> dict[str, Any]:
    """Read and check ``model.json``; raises ModelError with the reason."""
    try:
        info = loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model metadata {path}: {exc}") from None
    check(info, str(path))
    return dict(info)


def read_verified_model(path: Path, info: Mapping[str, Any]) -> bytes:
    """The ONNX file's bytes, once they are shown to be the ones ``model.json`` describes (SHA-256).

    The service hands these bytes to every worker it ever starts and never reads the path again,
    so a file replaced or removed after start changes nothing that is served.
    """
    try:
        model = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc}") from None
    digest = sha256_of(model)
    if digest != info["sha256"]:
        raise ModelError(f"{path} has SHA-256 {digest}, but model.json says {info['sha256']}")
    return model
