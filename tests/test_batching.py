"""The adaptive batcher: grouping, routing by position, bounds, and failures reaching every waiter.

The pool behind it is a small in-process stand-in whose worker can be held, failed or crashed
on purpose; tests/test_lifecycle.py and tests/e2e/ exercise the batcher with the real pool.
"""

from __future__ import annotations

import asyncio
import random
from array import array

import pytest

from function.batching import AdaptiveBatcher
from function.errors import ModelUnavailable, Overloaded, ServiceError
from function.metrics import Metrics
from function.prediction import BatchResult, Prediction

LABELS = ("a", "b")


class StandInWorker:
    """Labels each text by its first letter; can be held, failed or broken."""

    def __init__(self) -> None:
        self.alive = True
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def run(self, texts: list[str]) -> BatchResult:
        self.batches.append(list(texts))
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        probabilities = array("f", [p for t in texts for p in ((1.0, 0.0) if t[0] == "a" else (0.0, 1.0))])
        return BatchResult([t[0] for t in texts], probabilities.tobytes(), 0.0, 0.001)


class StandInPool:
    def __init__(self, workers: int = 1) -> None:
        self.workers = [StandInWorker() for _ in range(workers)]
        self.idle: asyncio.Queue[StandInWorker] = asyncio.Queue()
        for w in self.workers:
            self.idle.put_nowait(w)

    async def acquire(self) -> StandInWorker:
        return await self.idle.get()

    def release(self, worker: StandInWorker) -> None:
        self.idle.put_nowait(worker)


def batcher_for(pool: StandInPool, max_batch: int = 4, max_pending: int = 100) -> AdaptiveBatcher:
    batcher = AdaptiveBatcher(
        pool,
        len(LABELS),
        max_batch=max_batch,
        max_pending=max_pending,  # type: ignore[arg-type]
        retry_after=3,
        metrics=Metrics(LABELS, []),
    )
    batcher.start()
    return batcher


async def submitted(batcher: AdaptiveBatcher, *texts: str) -> list[asyncio.Task[list[Prediction]]]:
    """Each text as a request of its own, given a moment to reach the batcher."""
    requests = [asyncio.create_task(batcher.classify([text])) for text in texts]
    await asyncio.sleep(0.01)
    return requests


async def test_each_caller_gets_the_prediction_for_its_own_text() -> None:
    pool = StandInPool(workers=2)
    batcher = batcher_for(pool, max_pending=1000)
    rng = random.Random(7)
    texts = [rng.choice("ab") + str(i) for i in range(200)]
    results = await asyncio.gather(*(batcher.classify([t]) for t in texts))
    assert [r[0].label for r in results] == [t[0] for t in texts]
    assert [list(r[0].probabilities) for r in results] == [[1.0, 0.0] if t[0] == "a" else [0.0, 1.0] for t in texts]
    assert batcher.pending == 0


async def test_a_multi_text_request_is_answered_in_order() -> None:
    batcher = batcher_for(StandInPool(), max_batch=3)
    texts = ["a1", "b2", "b3", "a4", "a5", "b6", "a7"]
    assert [p.label for p in await batcher.classify(texts)] == [t[0] for t in texts]


async def test_texts_that_arrive_while_the_worker_is_busy_form_full_batches() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = batcher_for(pool, max_batch=4)
    [first] = await submitted(batcher, "a0")
    waiting = await submitted(batcher, *(f"b{i}" for i in range(1, 10)))
    worker.gate.set()
    await asyncio.gather(first, *waiting)
    assert [len(b) for b in worker.batches] == [1, 4, 4, 1]


async def test_a_lone_text_is_sent_at_once_without_waiting_for_company() -> None:
    pool = StandInPool()
    batcher = batcher_for(pool, max_batch=32)
    await asyncio.wait_for(batcher.classify(["a"]), timeout=0.5)
    assert pool.workers[0].batches == [["a"]]


async def test_more_pending_texts_than_the_bound_are_refused_at_once() -> None:
    pool = StandInPool()
    pool.workers[0].gate.clear()
    batcher = batcher_for(pool, max_pending=5)
    held = asyncio.create_task(batcher.classify(["a"] * 4))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as refused:
        await batcher.classify(["b", "b"])
    assert refused.value.headers == {"Retry-After": "3"}
    pool.workers[0].gate.set()
    assert len(await held) == 4
    assert len(await batcher.classify(["b"] * 5)) == 5


async def test_a_worker_failure_reaches_every_waiter_of_its_batch_and_only_them() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = batcher_for(pool, max_batch=8)
    [first] = await submitted(batcher, "a")
    doomed = await submitted(batcher, *(f"b{i}" for i in range(5)))
    worker.error = ModelUnavailable("worker died")
    worker.gate.set()
    outcomes = await asyncio.gather(first, *doomed, return_exceptions=True)
    assert all(isinstance(o, ModelUnavailable) for o in outcomes)
    worker.error = None
    assert (await batcher.classify(["a"]))[0].label == "a"
    assert batcher.pending == 0


async def test_an_unexpected_error_is_a_generic_service_error_and_the_batcher_goes_on() -> None:
    pool = StandInPool()
    pool.workers[0].error = ZeroDivisionError("bug")
    batcher = batcher_for(pool)
    with pytest.raises(ServiceError) as failure:
        await batcher.classify(["a"])
    assert failure.value.status == 500
    assert "ZeroDivision" not in failure.value.detail
    pool.workers[0].error = None
    assert (await batcher.classify(["b"]))[0].label == "b"


async def test_a_stopped_batcher_fails_queued_waiters_and_refuses_new_work() -> None:
    pool = StandInPool()
    pool.workers[0].gate.clear()
    batcher = batcher_for(pool)
    [running] = await submitted(batcher, "a")
    [queued] = await submitted(batcher, "b")
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0.01)
    pool.workers[0].gate.set()
    await stopping
    assert (await running)[0].label == "a"  # already with a worker: finishes
    with pytest.raises(ModelUnavailable):
        await queued
    with pytest.raises(ModelUnavailable):
        await batcher.classify(["a"])


async def test_a_caller_that_gives_up_is_dropped_from_its_batch() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = batcher_for(pool)
    [first] = await submitted(batcher, "a")
    gone, kept = await submitted(batcher, "b-gone", "b-kept")
    gone.cancel()
    worker.gate.set()
    await asyncio.gather(first, kept)
    assert worker.batches == [["a"], ["b-kept"]]
    assert batcher.pending == 0
