"""``python -m bench.explain``: what explanations and the model-health outputs cost per text.

Times ``function.inference.session.predict`` (what a worker runs) over the test texts in one
thread with a one-thread session, in calls of 1 and of 16 texts: without explanations (every
call's outputs: label, probabilities, token counts), and explaining every text. With
``--before REV`` it also times that commit's ``model/model.onnx`` asked for its label and
probabilities only, the graph before the token counts and explanation outputs existed.
Rounds alternate between the variants; the best round of each is kept. Writes ``bench/EXPLAIN.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench import machine
from bench.data import committed_model, test_texts
from bench.paths import BENCH, MODEL_PATH
from bench.tables import markdown_table, publish
from function.inference import session as onnx_session
from function.model_info import INPUT, OUTPUTS

Call = Callable[[list[str]], object]


def per_text_us(call: Call, texts: Sequence[str], size: int) -> float:
    """Microseconds per text of ``call`` over ``texts`` in calls of ``size``."""
    chunks = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
    started = time.perf_counter()
    for chunk in chunks:
        call(chunk)
    return (time.perf_counter() - started) / len(texts) * 1e6


def variants(before: bytes | None) -> dict[str, Call]:
    session = onnx_session.load_session(str(MODEL_PATH))
    calls: dict[str, Call] = {
        "served outputs (explain=false)": lambda texts: onnx_session.predict(session, texts),
        "every text explained (explain=true)": lambda texts: onnx_session.predict(session, texts, range(len(texts))),
        "every output, as a generic ONNX runner asks (session.run(None))": lambda texts: session.run(
            None, {INPUT: np.array(texts, dtype=object)}
        ),
    }
    if before is not None:
        old = onnx_session.load_session(before)
        calls["the graph before: label and probabilities only"] = lambda texts: old.run(
            list(OUTPUTS), {INPUT: np.array(texts, dtype=object)}
        )
    return calls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a commit whose model/model.onnx to time beside")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=1000, help="test texts a round")
    parser.add_argument("--out", type=Path, default=BENCH / "EXPLAIN.md")
    args = parser.parse_args(argv)
    before = committed_model(args.before) if args.before else None
    texts = test_texts()[: args.texts]
    calls = variants(before)
    for call in calls.values():  # warm up
        call(list(texts[:50]))
    best: dict[tuple[str, int], float] = {}
    for _ in range(args.rounds):
        for size in (1, 16):
            for name, call in calls.items():
                us = per_text_us(call, texts, size)
                best[(name, size)] = min(best.get((name, size), us), us)
    base = {size: best[(next(iter(calls)), size)] for size in (1, 16)}
    rows = [
        [name, *(f"{best[(name, size)]:.1f} ({best[(name, size)] / base[size]:.2f}x)" for size in (1, 16))]
        for name in calls
    ]
    before_note = f" `--before {args.before}` is that commit's graph." if args.before else ""
    text = "\n".join(
        [
            "# What explanations cost",
            "",
            f"{machine.describe()}. `python -m bench.explain{' --before ' + args.before if args.before else ''}`: "
            f"`function.inference.session.predict` over {len(texts)} test texts, one thread, best of "
            f"{args.rounds} alternating rounds; microseconds per text (and against the first row).{before_note}",
            "",
            markdown_table(["variant", "µs/text, calls of 1", "µs/text, calls of 16"], rows),
            "",
        ]
    )
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
