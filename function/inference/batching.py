"""Adaptive micro-batching in front of the inference pool, in two lanes bounded by characters.

Texts wait in one of two lanes by length. Whenever a worker is idle it takes a lane's queued texts
as one onnxruntime call: up to ``batch_max_size`` short texts, or long texts up to
``batch_max_chars`` characters (a text longer than that runs alone). Under light load a batch is
one text and nothing waits; under heavy load batches grow, and past ``max_pending`` texts new work
is refused at once.

A text is long when a full batch of texts its length would exceed ``batch_max_chars``. Long texts
run on at most ``workers - 1`` workers at once, so that with two or more workers one is always free
for short texts; when both lanes wait, workers take them in turn. A short text therefore waits
behind at most one long call, never behind a burst of them, and no lane starves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

from function.errors import ModelUnavailable, Overloaded, ServiceError
from function.inference.classifier import Prediction
from function.inference.messages import decode
from function.inference.pool import InferencePool
from function.inference.process import NotSent, WorkerProcess
from function.metrics import Metrics

log = logging.getLogger(__name__)


class _Item:
    __slots__ = ("arrived", "explain", "future", "text")

    def __init__(self, text: str, future: asyncio.Future[Prediction], explain: bool) -> None:
        self.text = text
        self.future = future
        self.explain = explain
        self.arrived = time.monotonic()  # same clock as the worker's start stamp


class AdaptiveBatcher:
    """The production ``Classifier``: bounded lanes of texts, batched onto the pool's workers."""

    def __init__(
        self,
        pool: InferencePool,
        labels: Sequence[str],
        *,
        batch_max_size: int,
        batch_max_chars: int,
        max_pending: int,
        metrics: Metrics,
    ) -> None:
        self.labels = tuple(labels)
        self.pool = pool
        self._batch_max_size = batch_max_size
        self._batch_max_chars = batch_max_chars
        self._long_text = max(1, batch_max_chars // batch_max_size)
        self._long_workers = max(1, pool.size - 1)
        self._max_pending = max_pending
        self._metrics = metrics
        self._pending = 0
        self._short: deque[_Item] = deque()
        self._long: deque[_Item] = deque()
        self._long_running = 0
        self._last_long = False  # the lane of the last batch taken while both lanes waited
        self._work: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def ready(self) -> bool:
        return self.running and self.pool.ready

    @property
    def alive(self) -> bool:
        return not self.pool.failed

    @property
    def pending(self) -> int:
        """Texts accepted and not yet answered."""
        return self._pending

    async def start(self) -> None:
        """Start the pool, then bind to the running loop and start dispatching."""
        await self.pool.start()
        self._work = asyncio.Event()
        self._task = asyncio.create_task(self._dispatch(), name="batcher")

    async def predict(self, texts: Sequence[str], explain: bool = False) -> list[Prediction]:
        """Queue ``texts`` and wait for their predictions (with explanations if ``explain``), in order."""
        if self._work is None or not self.running:
            raise ModelUnavailable("the model is not serving")
        if self.pool.failed:
            raise ModelUnavailable("the inference workers cannot be started; the service is unhealthy")
        if self._pending + len(texts) > self._max_pending:
            raise Overloaded("too many requests are queued; retry shortly")
        loop = asyncio.get_running_loop()
        items = [_Item(text, loop.create_future(), explain) for text in texts]
        self._pending += len(items)
        for item in items:
            (self._long if len(item.text) > self._long_text else self._short).append(item)
        self._work.set()
        if len(items) == 1:
            return [await items[0].future]
        return list(await asyncio.gather(*(item.future for item in items)))

    def _lanes_ready(self) -> tuple[bool, bool]:
        """Whether the short lane, and the long lane, may hand a batch to a worker now."""
        return bool(self._short), bool(self._long) and self._long_running < self._long_workers

    def _next_lane(self) -> bool | None:
        """True for the long lane, False for the short one (in turn when both may go), None for neither."""
        short, long = self._lanes_ready()
        if short and long:
            self._last_long = not self._last_long
            return self._last_long
        return True if long else False if short else None

    def _take(self, long: bool) -> list[_Item]:
        """The next batch of a lane; texts whose caller gave up are dropped on the way."""
        lane = self._long if long else self._short
        batch: list[_Item] = []
        chars = 0
        while lane and len(batch) < self._batch_max_size:
            item = lane[0]
            if item.future.done():  # cancelled: the client went away
                lane.popleft()
                self._pending -= 1
                continue
            if long and batch and chars + len(item.text) > self._batch_max_chars:
                break
            batch.append(lane.popleft())
            chars += len(item.text)
        return batch

    async def _dispatch(self) -> None:
        assert self._work is not None
        work = self._work
        try:
            while True:
                while not any(self._lanes_ready()):
                    work.clear()
                    await work.wait()
                try:
                    worker = await self.pool.acquire()
                except ServiceError as exc:  # the pool has failed: answer at once rather than never
                    self._fail_queued(exc)
                    continue
                long = self._next_lane()
                batch = [] if long is None else self._take(long)
                if not batch:
                    self.pool.release(worker)
                    continue
                if long:
                    self._long_running += 1
                task = asyncio.create_task(self._run(worker, batch, bool(long)))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        except BaseException as exc:
            # NOTE: nobody would ever answer what is still queued: fail every waiter.
            self._fail_queued(ModelUnavailable("the model is shutting down"))
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("batcher stopped")
            raise

    async def _run(self, worker: WorkerProcess, batch: list[_Item], long: bool) -> None:
        """Run ``batch`` on ``worker``, then, while texts wait, the next batch on the same worker.

        NOTE: handing the worker its next batch here, as soon as its answer is in, saves the round
        through the dispatcher (a wake-up, ``acquire``, a new task: two or three turns of a busy
        event loop, milliseconds under load) during which the worker would sit idle.
        """
        try:
            while True:
                try:
                    await self._run_one(worker, batch, long)
                finally:
                    if long:
                        self._long_running -= 1
                lane = self._next_lane() if worker.alive and self.running and not self.pool.failed else None
                batch = [] if lane is None else self._take(lane)
                if not batch:
                    return
                long = bool(lane)
                if long:
                    self._long_running += 1
        finally:
            self.pool.release(worker)
            if self._work is not None:
                self._work.set()

    async def _run_one(self, worker: WorkerProcess, batch: list[_Item], long: bool) -> None:
        """One onnxruntime call: its texts are answered, failed, or put back at the front of their lane."""
        answered = len(batch)
        try:
            explain = tuple(i for i, item in enumerate(batch) if item.explain)
            result = await self.pool.predict(worker, [item.text for item in batch], explain)
        except NotSent:  # the worker had died while idle: the texts go back to the front of their lane
            (self._long if long else self._short).extendleft(reversed(batch))
            answered = 0
        except ServiceError as exc:
            self._fail(batch, exc)
        except Exception:
            log.exception("inference failed for a batch of %d", len(batch))
            self._fail(batch, ServiceError("inference failed"))
        else:
            predictions = decode(result, len(self.labels))
            self._metrics.observe_batch(result.seconds, [result.started - item.arrived for item in batch], predictions)
            for item, prediction in zip(batch, predictions, strict=True):
                if not item.future.done():
                    item.future.set_result(prediction)
        finally:
            self._pending -= answered

    def _fail(self, batch: Sequence[_Item], error: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    def _fail_queued(self, error: Exception) -> None:
        for lane in (self._short, self._long):
            self._fail(lane, error)
            self._pending -= len(lane)
            lane.clear()

    async def stop(self, grace: float) -> None:
        """Queued texts fail with 503 at once; batches already with a worker get ``grace`` seconds to finish."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.pool.stop(grace)
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
