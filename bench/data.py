"""The test texts, the request-body files the load generator replays (one JSON body a line), and
earlier models from git history."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from bench.paths import ROOT, TEST_DATA
from train import load_dataset


def committed_model(revision: str) -> bytes:
    """``model/model.onnx`` as committed at ``revision``."""
    return subprocess.run(
        ["git", "show", f"{revision}:model/model.onnx"], cwd=ROOT, capture_output=True, check=True
    ).stdout


@functools.cache
def test_texts() -> tuple[str, ...]:
    return tuple(load_dataset(TEST_DATA).texts)


def _line(body: object) -> str:
    # NOTE: ensure_ascii escapes every non-ASCII character (U+2028 included), and json escapes
    # newlines, so each body is exactly one ASCII line for the Lua reader.
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


def write_single_bodies(path: Path) -> Path:
    """``{"text": ...}`` for every test text, for ``POST /prediction``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(_line({"text": t}) + "\n" for t in test_texts()), encoding="ascii")
    return path


def write_v2_bodies(path: Path) -> Path:
    """An Open Inference Protocol request of one text (a BYTES tensor of shape [1]) for every test text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1]}
    path.write_text("".join(_line({"inputs": [tensor | {"data": [t]}]}) + "\n" for t in test_texts()), encoding="ascii")
    return path


def write_batch_bodies(path: Path, size: int) -> Path:
    """``{"texts": [...]}`` of ``size`` consecutive test texts each, for ``POST /predictions``."""
    texts = test_texts()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        _line({"texts": [texts[(start + i) % len(texts)] for i in range(size)]}) for start in range(0, len(texts), size)
    ]
    path.write_text("".join(line + "\n" for line in lines), encoding="ascii")
    return path
