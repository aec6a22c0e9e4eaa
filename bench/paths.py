"""Where the benchmarks read their inputs and write their outputs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MODEL_DIR = ROOT / "model"
MODEL_PATH = MODEL_DIR / "model.onnx"
EVALUATION = MODEL_DIR / "evaluation.json"
TRAIN_DATA = ROOT / "data" / "train.jsonl.gz"
TEST_DATA = ROOT / "data" / "test.jsonl.gz"
#: Scratch output (gitignored): request files, server logs, smoke-run reports.
OUT = BENCH / "out"
LUA_SCRIPT = BENCH / "post_texts.lua"
