"""Model-only ceiling: documents/s of ``model/model.onnx`` in N processes at once, no HTTP.

Each process loads the model the way a service worker does (``function.inference.session.load_session``)
and classifies the test texts one at a time through ``function.parallel.worker.predict``, all processes
starting together behind a barrier and stopping at the same deadline.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from bench.data import test_texts
from bench.paths import MODEL_PATH

WARM_UP_DOCS = 50


@dataclass(frozen=True)
class CeilingResult:
    processes: int
    docs: int
    docs_per_second: float  # sum over processes of each one's docs / its own elapsed time


def _work(
    index: int, texts: Sequence[str], seconds: float, barrier: Barrier, results: Queue[tuple[int, float]]
) -> None:
    from function.inference.session import load_session
    from function.parallel import worker

    session = load_session(str(MODEL_PATH))
    for text in texts[:WARM_UP_DOCS]:
        worker.predict([text], session=session)
    barrier.wait()
    done, position = 0, (index * len(texts)) // max(1, barrier.parties)
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        worker.predict([texts[position]], session=session)
        position = (position + 1) % len(texts)
        done += 1
    results.put((done, time.perf_counter() - started))


def model_ceiling(processes: int, seconds: float) -> CeilingResult:
    """Run ``processes`` single-document loops at once for ``seconds``."""
    context = multiprocessing.get_context("forkserver")
    texts = list(test_texts())
    barrier = context.Barrier(processes)
    results: Queue[tuple[int, float]] = context.Queue()
    workers = [
        context.Process(target=_work, args=(i, texts, seconds, barrier, results), daemon=True) for i in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        answers = [results.get(timeout=seconds + 60) for _ in workers]
    except queue.Empty:
        raise RuntimeError("a model-ceiling process did not report in time") from None
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.terminate()
    return CeilingResult(processes, sum(n for n, _ in answers), sum(n / s for n, s in answers))
