"""Adaptive micro-batching in front of the inference pool, in two lanes bounded by characters.

Texts wait in one of two lanes by length. Whenever a worker is idle it takes a lane's queued texts
as one onnxruntime call: up to ``batch_max_size`` short texts, or long texts up to
``batch_max_chars`` characters (a text longer than that runs alone). Under light load a batch is
one text and nothing waits; under heavy load batches grow, and past ``max_pending`` texts new work
is refused at once.

Short texts run on at most ``short_text_workers`` workers at once (one fewer than the CPUs, so
that the event loop keeps one); a full batch that no idle worker may take is queued behind a
running short call, so that its worker goes from one call to the next without waiting for the
event loop.

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
from typing import NamedTuple

from function.errors import ModelUnavailable, Overloaded, ServiceError
from function.inference.classifier import Prediction
from function.inference.messages import BatchResult, decode
from function.inference.pool import InferencePool
from function.inference.process import Call, NotSent, WorkerProcess
from function.metrics import Metrics

log = logging.getLogger(__name__)


class _Item:
    __slots__ = ("arrived", "explain", "future", "text")

    def __init__(self, text: str, future: asyncio.Future[Prediction], explain: bool) -> None:
        self.text = text
        self.future = future
        self.explain = explain
        self.arrived = time.monotonic()  # same clock as the worker's start stamp


class _Call(NamedTuple):
    """A batch handed to a worker."""

    call: Call[BatchResult]
    batch: list[_Item]
    long: bool


class AdaptiveBatcher:
    """The production ``Classifier``: bounded lanes of texts, batched onto the pool's workers."""

    def __init__(
        self,
        pool: InferencePool,
        labels: Sequence[str],
        *,
        short_text_workers: int,
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
        self._long_running = 0  # long batches sent and not yet finished: one per worker, never queued ahead
        self._last_long = False  # the lane of the last batch taken while both lanes waited
        self._work: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._short_workers = max(1, min(short_text_workers, pool.size))
        self._short_calls = 0  # short batches sent and not yet finished, those queued ahead included
        self._open: dict[WorkerProcess, None] = {}  # running one call and none behind it, oldest first
        self._ahead: dict[WorkerProcess, _Call] = {}  # the call queued behind the running one

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
        log.info(
            "batching: up to %d short texts a call, on at most %d of the %d workers at once",
            self._batch_max_size,
            self._short_workers,
            self.pool.size,
        )
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
        if self._open:
            self._send_ahead()
        if len(items) == 1:
            return [await items[0].future]
        return list(await asyncio.gather(*(item.future for item in items)))

    def _short_may_start(self) -> bool:
        """Fewer workers than allowed are running short texts (a call queued ahead shares its worker)."""
        return self._short_calls - len(self._ahead) < self._short_workers

    def _lanes_ready(self) -> tuple[bool, bool]:
        """Whether the short lane, and the long lane, may hand a batch to an idle worker now."""
        return bool(self._short) and self._short_may_start(), bool(
            self._long
        ) and self._long_running < self._long_workers

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
                call = self._next_call(worker)
                if call is None:
                    self.pool.release(worker)
                    continue
                task = asyncio.create_task(self._run(worker, call))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        except BaseException as exc:
            # NOTE: nobody would ever answer what is still queued: fail every waiter.
            self._fail_queued(ModelUnavailable("the model is shutting down"))
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("batcher stopped")
            raise

    async def _run(self, worker: WorkerProcess, call: _Call | None) -> None:
        """Finish ``call`` on ``worker``, then, while texts wait, the next batch on the same worker.

        NOTE: the worker's next batch is sent from here, as soon as its answer is in, or earlier, as a
        call queued behind the running one (``_send_ahead``). Going back through the dispatcher (a
        wake-up, ``acquire``, a new task: two or three turns of a busy event loop) would leave the
        worker idle meanwhile.
        """
        try:
            while call is not None:
                if not call.long and worker.alive:
                    self._open[worker] = None
                    self._send_ahead()
                await self._finish(worker, call)
                self._open.pop(worker, None)
                call = self._ahead.pop(worker, None)
                if call is None and worker.alive and self.running and not self.pool.failed:
                    call = self._next_call(worker)
        finally:
            self._open.pop(worker, None)
            ahead = self._ahead.pop(worker, None)
            if ahead is not None:  # only when this task is cancelled: the texts are failed, not lost
                self._fail(ahead.batch, ModelUnavailable("the model is shutting down"))
                self._pending -= len(ahead.batch)
                self._short_calls -= 1
            self.pool.release(worker)
            if self._work is not None:
                self._work.set()

    def _send_ahead(self) -> None:
        """While a full batch of short texts waits, no idle worker may take it and no long texts wait
        for their turn, queue it behind a running short call.

        The worker starts it the moment it has answered, instead of waiting for its answer to reach the
        event loop and the next batch to come back (half a millisecond at best, several under load).
        """
        while (
            self._open
            and len(self._short) >= self._batch_max_size
            and not (self.pool.has_idle and self._short_may_start())
            and not self._lanes_ready()[1]  # long texts that may run take their turn first
        ):
            worker = next(iter(self._open))
            del self._open[worker]
            call = self._next_call(worker, False)
            if call is not None:
                self._ahead[worker] = call

    def _next_call(self, worker: WorkerProcess, long: bool | None = None) -> _Call | None:
        """The next batch of lane ``long`` (by default the lane whose turn it is), sent to ``worker``;
        None when there is none, or when it could not be sent."""
        if long is None:
            long = self._next_lane()
        batch = [] if long is None else self._take(long)
        return self._send(worker, batch, bool(long)) if batch else None

    def _send(self, worker: WorkerProcess, batch: list[_Item], long: bool) -> _Call | None:
        """Hand ``batch`` to ``worker`` now; None (the texts back at the front of their lane) if it had died."""
        try:
            explain = tuple(i for i, item in enumerate(batch) if item.explain)
            call = _Call(self.pool.send(worker, [item.text for item in batch], explain), batch, long)
        except NotSent:
            self._requeue(batch, long)
            return None
        except ServiceError as exc:
            self._fail(batch, exc)
            self._pending -= len(batch)
            return None
        if long:
            self._long_running += 1
        else:
            self._short_calls += 1
        return call

    async def _finish(self, worker: WorkerProcess, call: _Call) -> None:
        """Wait for one onnxruntime call: its texts are answered, failed, or put back at the front of their lane."""
        batch = call.batch
        answered = len(batch)
        try:
            result = await self.pool.answer(worker, call.call)
        except NotSent:  # the worker died before it took the call: the texts may run elsewhere
            self._requeue(batch, call.long)
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
            if call.long:
                self._long_running -= 1
            else:
                self._short_calls -= 1

    def _requeue(self, batch: list[_Item], long: bool) -> None:
        """Texts that never ran go back to the front of their lane, or fail once nothing takes them."""
        if not self.running:  # stopping: the dispatcher and the workers' loops have ended
            self._fail(batch, ModelUnavailable("the model is shutting down"))
            self._pending -= len(batch)
            return
        (self._long if long else self._short).extendleft(reversed(batch))
        if self._work is not None:
            self._work.set()

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
