"""``python -m bench.deadline``: how long the longest onnxruntime call takes, for INFERENCE_TIMEOUT_SECONDS.

The longest call the service makes holds ``BATCH_MAX_CHARS`` characters (the budget
``function.budgets`` derives for the pod: 1 GiB, 2 workers). Two processes (the two workers of a
2-CPU pod, both busy) each load the model as a worker does and run such calls of test-set prose
back to back; the table gives the calls' p50, p99 and maximum, and the deadline they justify:
ten times the p99, rounded up to a whole second. Writes ``bench/DEADLINE.md``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from pathlib import Path

from bench import machine
from bench.data import test_texts
from bench.paths import BENCH, MODEL_PATH
from bench.tables import markdown_table, publish
from function.budgets import derive
from function.settings import Settings

DEADLINE_FACTOR = 10


def call_texts(chars: int) -> list[str]:
    """Test texts, whole and in order, adding up to about ``chars`` characters."""
    texts, total = [], 0
    for text in test_texts() * 100:
        if total + len(text) > chars:
            break
        texts.append(text)
        total += len(text)
    return texts


def _calls(texts: list[str], calls: int, results: Queue[list[float]], model: Path) -> None:
    from function.inference import session as onnx_session

    session = onnx_session.load_session(str(model))
    onnx_session.predict(session, texts[:10])
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        onnx_session.predict(session, texts)
        seconds.append(time.perf_counter() - started)
    results.put(seconds)


def measure(chars: int, processes: int, calls: int, model: Path = MODEL_PATH) -> list[float]:
    """Every call's seconds, from ``processes`` processes running ``calls`` calls of ``chars`` each."""
    context = multiprocessing.get_context("forkserver")
    results: Queue[list[float]] = context.Queue()
    texts = call_texts(chars)
    workers = [context.Process(target=_calls, args=(texts, calls, results, model)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    seconds = [s for _ in workers for s in results.get(timeout=600)]
    for worker in workers:
        worker.join()
    return seconds


def render(chars: int, processes: int, seconds: Sequence[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    deadline = math.ceil(DEADLINE_FACTOR * p99)
    default = Settings.inference_timeout_seconds
    verdict = "as much as" if default == deadline else ("more than" if default > deadline else "LESS than")
    table = markdown_table(
        ["characters a call", "calls", "p50 s", "p99 s", "max s", f"{DEADLINE_FACTOR} x p99, rounded up"],
        [
            [
                f"{chars:,}",
                len(seconds),
                f"{statistics.median(ordered):.3f}",
                f"{p99:.3f}",
                f"{ordered[-1]:.3f}",
                f"{deadline} s",
            ]
        ],
    )
    return "\n".join(
        [
            "# The longest onnxruntime call, and the inference deadline",
            "",
            f"Machine: {machine.describe()}. `python -m bench.deadline`: {processes} processes at once, each "
            f"with a one-thread onnxruntime session of `model/model.onnx`, run calls of test-set texts adding up "
            f"to {chars:,} characters (BATCH_MAX_CHARS as derived for a 1 GiB pod with 2 workers) back to back.",
            "",
            table,
            "",
            f"`INFERENCE_TIMEOUT_SECONDS` defaults to {Settings.inference_timeout_seconds:g} s, "
            f"{verdict} the last column of this run: a worker that takes longer over one call is killed and "
            "replaced, and the texts it held get 503. A machine much slower than this one, or a larger "
            "`BATCH_MAX_CHARS` or `MAX_BODY_BYTES` (a text longer than the budget runs alone), needs a longer "
            "deadline.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deadline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per process")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help="the ONNX file to time")
    parser.add_argument("--out", type=Path, default=BENCH / "DEADLINE.md")
    args = parser.parse_args(argv)
    chars = derive(None, 2, Settings.max_body_bytes).batch_chars
    publish(render(chars, args.processes, measure(chars, args.processes, args.calls, args.model)), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
