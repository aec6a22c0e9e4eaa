"""The adaptive batcher and the dispatcher: grouping, routing by position, bounds, and failures reaching every waiter.

The workers behind the real dispatcher are small in-process stand-ins that can be held, failed or
crashed on purpose; tests/test_lifecycle.py and tests/e2e/ exercise both with real processes.
"""

from __future__ import annotations

import asyncio
import random
from array import array
from collections.abc import Callable

import pytest

from function.batching.adaptive import AdaptiveBatcher
from function.errors import ModelUnavailable, Overloaded, ServiceError
from function.inference.classifier import Explanation, Prediction
from function.inference.messages import BatchResult
from function.metrics import Metrics
from function.parallel.calls import NotSent
from function.parallel.dispatcher import Dispatcher

LABELS = ("a", "b")


class StandInWorker:
    """Labels each text by its first letter; can be held, failed or broken."""

    def __init__(self) -> None:
        self.alive = True
        self.batches: list[list[str]] = []  # as sent, in order
        self.explained: list[tuple[int, ...]] = []
        self.sent_while: list[int] = []  # for each call, how many of this worker's calls were unfinished
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None
        self.started = 0  # calls begun: a call sent behind another begins when that one has ended
        self._last: asyncio.Future[BatchResult] | None = None
        self._unfinished = 0

    def predict(self, texts: list[str], explain: tuple[int, ...]) -> asyncio.Future[BatchResult]:
        """Take the call now; it runs once the call sent before it has ended, as in a real worker."""
        self.batches.append(list(texts))
        self.explained.append(explain)
        self.sent_while.append(self._unfinished)
        before = self._last if self._last is not None and not self._last.done() else None
        self._unfinished += 1
        self._last = asyncio.ensure_future(self._run(before, texts, explain))
        return self._last

    async def _run(
        self, before: asyncio.Future[BatchResult] | None, texts: list[str], explain: tuple[int, ...]
    ) -> BatchResult:
        try:
            if before is not None:
                await asyncio.wait({before})
                if before.cancelled() or before.exception() is not None:  # as a process that died in it
                    raise NotSent("the worker stopped before this call started")
            self.started += 1
            await self.gate.wait()
            if self.error is not None:
                raise self.error
        finally:
            self._unfinished -= 1
        probabilities = array("f", [p for t in texts for p in ((1.0, 0.0) if t[0] == "a" else (0.0, 1.0))])
        tokens = array("i", [len(t.split()) for t in texts]).tobytes()
        explanations = {i: Explanation(1.0, 0.5, [(texts[i], 1.0, 0.5)], 0.0) for i in explain}
        return BatchResult([t[0] for t in texts], probabilities.tobytes(), tokens, tokens, 0.0, 0.001, explanations)


Hook = Callable[[StandInWorker], None]


class StandInPool:
    """Reports its workers ready at start, as the real pool does; ``fail()`` is a pool whose restarts failed."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = [StandInWorker() for _ in range(workers)]
        self.size = workers
        self.ready = True
        self.failed = False
        self.on_dead: Hook = lambda _: None

    async def start(self, on_ready: Hook, on_dead: Hook) -> None:
        self.on_dead = on_dead
        for w in self.workers:
            on_ready(w)

    def fail(self, worker: StandInWorker) -> None:
        self.failed = True
        self.on_dead(worker)

    async def stop(self, grace: float) -> None:
        pass


async def batcher_for(
    pool: StandInPool,
    batch_max_size: int = 4,
    max_pending: int = 100,
    batch_max_chars: int = 1000,
    short_text_workers: int | None = None,
) -> AdaptiveBatcher:
    batcher = AdaptiveBatcher(
        Dispatcher(pool),  # type: ignore[arg-type]
        LABELS,
        short_text_workers=pool.size if short_text_workers is None else short_text_workers,
        batch_max_size=batch_max_size,
        batch_max_chars=batch_max_chars,
        max_pending=max_pending,
        metrics=Metrics(LABELS, []),
    )
    await batcher.start()
    return batcher


async def submitted(batcher: AdaptiveBatcher, *texts: str) -> list[asyncio.Task[list[Prediction]]]:
    """Each text as a request of its own, given a moment to reach the batcher."""
    requests = [asyncio.create_task(batcher.predict([text])) for text in texts]
    await asyncio.sleep(0.01)
    return requests


async def test_each_caller_gets_the_prediction_for_its_own_text() -> None:
    pool = StandInPool(workers=2)
    batcher = await batcher_for(pool, max_pending=1000)
    rng = random.Random(7)
    texts = [rng.choice("ab") + str(i) for i in range(200)]
    results = await asyncio.gather(*(batcher.predict([t]) for t in texts))
    assert [r[0].label for r in results] == [t[0] for t in texts]
    assert [list(r[0].probabilities) for r in results] == [[1.0, 0.0] if t[0] == "a" else [0.0, 1.0] for t in texts]
    assert batcher.pending == 0


async def test_a_multi_text_request_is_answered_in_order() -> None:
    batcher = await batcher_for(StandInPool(), batch_max_size=3)
    texts = ["a1", "b2", "b3", "a4", "a5", "b6", "a7"]
    assert [p.label for p in await batcher.predict(texts)] == [t[0] for t in texts]


async def test_full_batches_that_arrive_while_the_worker_is_busy_are_queued_behind_its_running_call() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4)
    [first] = await submitted(batcher, "a0")
    waiting = await submitted(batcher, *(f"b{i}" for i in range(1, 10)))
    # One full batch is with the worker already, behind the call it is running; the rest wait.
    assert [len(b) for b in worker.batches] == [1, 4]
    assert worker.started == 1
    worker.gate.set()
    await asyncio.gather(first, *waiting)
    assert [b[0] for b in worker.batches] == ["a0", "b1", "b5", "b9"]
    assert [len(b) for b in worker.batches] == [1, 4, 4, 1]
    # Each whole batch went to the worker while the call before it ran; only the last, partial one waited.
    assert worker.sent_while == [0, 1, 1, 0]


async def test_less_than_a_full_batch_waits_for_the_worker_to_answer_rather_than_queue_behind_it() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4)
    [first] = await submitted(batcher, "a0")
    waiting = await submitted(batcher, "b1", "b2", "b3")
    assert worker.batches == [["a0"]]
    worker.gate.set()
    await asyncio.gather(first, *waiting)
    assert worker.batches == [["a0"], ["b1", "b2", "b3"]]


async def test_short_texts_run_on_no_more_workers_at_once_than_allowed_and_the_spare_takes_long_texts() -> None:
    pool = StandInPool(workers=2)
    for w in pool.workers:
        w.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4, batch_max_chars=1000, short_text_workers=1)
    shorts = await submitted(batcher, *(f"b{i}" for i in range(10)))
    busy = [w for w in pool.workers if w.batches]
    assert len(busy) == 1, "short texts took both workers"
    [spare] = [w for w in pool.workers if not w.batches]
    [long] = await submitted(batcher, long_text())
    assert spare.batches == [[long_text()]], "the long text waited behind short texts"
    for w in pool.workers:
        w.gate.set()
    assert [p[0].label for p in await asyncio.gather(*shorts)] == ["b"] * 10
    assert (await long)[0].label == "a"
    assert all(t.startswith("b") for b in busy[0].batches for t in b)


async def test_only_texts_asked_to_be_explained_are_explained_even_in_a_shared_batch() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4)
    [first] = await submitted(batcher, "a0")
    plain = asyncio.create_task(batcher.predict(["a1"]))
    explained = asyncio.create_task(batcher.predict(["b2", "b3"], explain=True))
    await asyncio.sleep(0.01)
    worker.gate.set()
    await first
    [p1], [p2, p3] = await plain, await explained
    assert worker.batches[1] == ["a1", "b2", "b3"]
    assert worker.explained[1] == (1, 2)
    assert p1.explanation is None
    assert p2.explanation is not None
    assert p3.explanation is not None
    assert (p2.explanation.terms[0][0], p3.explanation.terms[0][0]) == ("b2", "b3")
    assert (p1.tokens, p2.tokens) == (1, 1)


async def test_a_lone_text_is_sent_at_once_without_waiting_for_company() -> None:
    pool = StandInPool()
    batcher = await batcher_for(pool, batch_max_size=32)
    await asyncio.wait_for(batcher.predict(["a"]), timeout=0.5)
    assert pool.workers[0].batches == [["a"]]


async def test_more_pending_texts_than_the_bound_are_refused_at_once() -> None:
    pool = StandInPool()
    pool.workers[0].gate.clear()
    batcher = await batcher_for(pool, max_pending=5)
    held = asyncio.create_task(batcher.predict(["a"] * 4))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as refused:
        await batcher.predict(["b", "b"])
    assert refused.value.retry  # the HTTP layer adds Retry-After (tests/test_api.py)
    pool.workers[0].gate.set()
    assert len(await held) == 4
    assert len(await batcher.predict(["b"] * 5)) == 5


async def test_a_worker_failure_reaches_every_waiter_of_its_batch_and_only_them() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=8)
    [first] = await submitted(batcher, "a")
    doomed = await submitted(batcher, *(f"b{i}" for i in range(5)))
    worker.error = ModelUnavailable("worker died")
    worker.gate.set()
    outcomes = await asyncio.gather(first, *doomed, return_exceptions=True)
    assert all(isinstance(o, ModelUnavailable) for o in outcomes)
    worker.error = None
    assert (await batcher.predict(["a"]))[0].label == "a"
    assert batcher.pending == 0


async def test_an_unexpected_error_is_a_generic_service_error_and_the_batcher_goes_on() -> None:
    pool = StandInPool()
    pool.workers[0].error = ZeroDivisionError("bug")
    batcher = await batcher_for(pool)
    with pytest.raises(ServiceError) as failure:
        await batcher.predict(["a"])
    assert failure.value.status == 500
    assert "ZeroDivision" not in failure.value.detail
    pool.workers[0].error = None
    assert (await batcher.predict(["b"]))[0].label == "b"


async def test_a_stopped_batcher_fails_queued_waiters_and_refuses_new_work() -> None:
    pool = StandInPool()
    pool.workers[0].gate.clear()
    batcher = await batcher_for(pool)
    [running] = await submitted(batcher, "a")
    [queued] = await submitted(batcher, "b")
    stopping = asyncio.create_task(batcher.stop(grace=5))
    await asyncio.sleep(0.01)
    pool.workers[0].gate.set()
    await stopping
    assert (await running)[0].label == "a"  # already with a worker: finishes
    with pytest.raises(ModelUnavailable):
        await queued
    with pytest.raises(ModelUnavailable):
        await batcher.predict(["a"])


async def test_texts_queued_behind_a_call_that_fails_while_stopping_fail_too_rather_than_wait_forever() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4)
    [running] = await submitted(batcher, "a0")
    queued = await submitted(batcher, "b1", "b2", "b3", "b4")
    assert [len(b) for b in worker.batches] == [1, 4], "the full batch was not queued behind the running call"
    stopping = asyncio.create_task(batcher.stop(grace=1.0))
    await asyncio.sleep(0.01)
    worker.error = ModelUnavailable("the worker was killed at the end of the grace")
    worker.gate.set()
    await asyncio.wait_for(stopping, 1.0)
    outcomes = await asyncio.wait_for(asyncio.gather(running, *queued, return_exceptions=True), 1.0)
    assert all(isinstance(o, ModelUnavailable) for o in outcomes), outcomes
    assert batcher.pending == 0


async def test_a_caller_that_gives_up_is_dropped_from_its_batch() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool)
    [first] = await submitted(batcher, "a")
    gone, kept = await submitted(batcher, "b-gone", "b-kept")
    gone.cancel()
    worker.gate.set()
    await asyncio.gather(first, kept)
    assert worker.batches == [["a"], ["b-kept"]]
    assert batcher.pending == 0


# ---- two lanes: short texts are not held behind long ones, and neither lane starves ---------------------


def long_text(chars: int = 600) -> str:
    """A text of the long lane when longer than batch_max_chars // batch_max_size (250 for 1000 and 4)."""
    return "a" * chars


async def test_long_texts_are_batched_by_characters_and_one_longer_than_the_budget_runs_alone() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4, batch_max_chars=1000)
    [first] = await submitted(batcher, "a-first")
    waiting = await submitted(batcher, long_text(300), long_text(300), long_text(300), long_text(2000), long_text(300))
    worker.gate.set()
    await asyncio.gather(first, *waiting)
    assert [[len(t) for t in batch] for batch in worker.batches] == [[7], [300, 300, 300], [2000], [300]]


async def test_with_two_workers_long_texts_take_one_and_short_texts_keep_the_other() -> None:
    pool = StandInPool(workers=2)
    for w in pool.workers:
        w.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=4, batch_max_chars=1000)
    longs = await submitted(batcher, *(long_text() for _ in range(6)))
    assert sum(1 for w in pool.workers if w.batches) == 1, "long texts took both workers"
    idle = next(w for w in pool.workers if not w.batches)
    idle.gate.set()
    shorts = await submitted(batcher, "b1", "b2")
    await asyncio.gather(*shorts)
    assert idle.batches == [["b1"], ["b2"]] or idle.batches == [["b1", "b2"]]
    for w in pool.workers:
        w.gate.set()
    assert [p[0].label for p in await asyncio.gather(*longs)] == ["a"] * 6


async def test_with_one_worker_the_lanes_take_turns_so_neither_starves() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool, batch_max_size=1, batch_max_chars=1000)
    [first] = await submitted(batcher, "b0")
    rest = await submitted(batcher, *(long_text(1500) for _ in range(3)), "b1", "b2", "b3")
    worker.gate.set()
    await asyncio.gather(first, *rest)
    lanes = ["long" if len(batch[0]) > 1000 else "short" for batch in worker.batches[1:]]
    assert lanes == ["long", "short", "long", "short", "long", "short"]


async def test_a_failed_pool_fails_every_queued_text_at_once_and_new_ones_too() -> None:
    pool = StandInPool()
    [worker] = pool.workers
    worker.gate.clear()
    batcher = await batcher_for(pool)
    [running] = await submitted(batcher, "a")
    queued = await submitted(batcher, "b", "c")
    pool.fail(worker)
    worker.gate.set()
    await running
    for request in queued:
        with pytest.raises(ModelUnavailable):
            await request
    with pytest.raises(ModelUnavailable):
        await batcher.predict(["d"])
    assert batcher.pending == 0
