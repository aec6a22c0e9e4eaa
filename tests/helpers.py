"""What tests share besides fixtures: the project root and the test split's texts.

The server process and the process tree are ``bench.servers`` and ``bench.procs``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def split_texts(split: str = "test") -> list[str]:
    """The texts of ``data/<split>.jsonl.gz``, in order."""
    with gzip.open(ROOT / "data" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]


def prose(count: int, chars: int) -> list[str]:
    """``count`` texts of ``chars`` characters each, cut from the test split's texts laid end to end."""
    text = " ".join(split_texts())
    return [text[i * chars : (i + 1) * chars] for i in range(count)]


def text_body(size: int) -> bytes:
    """A ``{"text": ...}`` body of test-split prose, ``size`` bytes long at most (JSON escapes included)."""
    text = " ".join(split_texts())[:size]
    body = json.dumps({"text": text}).encode()
    while len(body) > size:
        text = text[: len(text) - (len(body) - size)]
        body = json.dumps({"text": text}).encode()
    return body
