"""The served model's metadata (``model/model.json``) and its integrity check."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from function.jsonio import loads

REQUIRED = ("name", "version", "labels", "sha256", "input", "outputs", "metrics")


class ModelError(RuntimeError):
    """The model folder cannot be served."""


def load_model_info(path: Path) -> dict[str, Any]:
    """Read and check ``model.json``; raises ModelError with the reason."""
    try:
        info = loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model metadata {path}: {exc}") from None
    missing = [key for key in REQUIRED if key not in info]
    if missing:
        raise ModelError(f"{path} lacks {missing}")
    if not info["labels"] or not all(isinstance(x, str) for x in info["labels"]):
        raise ModelError(f"{path}: 'labels' must be a non-empty list of strings")
    return dict(info)


def verify_model_file(path: Path, info: dict[str, Any]) -> None:
    """The ONNX file is the one model.json describes (same SHA-256)."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc}") from None
    if digest != info["sha256"]:
        raise ModelError(f"{path} has SHA-256 {digest}, but model.json says {info['sha256']}")
