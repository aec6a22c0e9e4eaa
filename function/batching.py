"""Adaptive micro-batching in front of the inference pool.

Texts wait in one queue; whenever a worker is idle, everything queued (up to ``max_batch``)
goes to it as one onnxruntime call. Under light load a batch is one text and nothing waits;
under heavy load batches grow, and past ``max_pending`` texts new work is refused at once.

Dispatch happens in the loop's callbacks, with no task in between: a text arriving while a worker
is idle is sent at once, and a worker that answers gets its next batch before its callers resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import deque
from collections.abc import Sequence
from functools import partial

from function.errors import ModelUnavailable, Overloaded, ServiceError
from function.metrics import Metrics
from function.pool import InferencePool, Worker
from function.prediction import BatchResult, Prediction

log = logging.getLogger(__name__)


class _Item:
    __slots__ = ("arrived", "future", "text")

    def __init__(self, text: str, future: asyncio.Future[Prediction]) -> None:
        self.text = text
        self.future = future
        self.arrived = time.monotonic()  # same clock as the worker's start stamp


class AdaptiveBatcher:
    def __init__(
        self,
        pool: InferencePool,
        n_labels: int,
        *,
        max_batch: int,
        max_pending: int,
        retry_after: int,
        metrics: Metrics,
    ) -> None:
        self._pool = pool
        self._n_labels = n_labels
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_after = str(retry_after)
        self._metrics = metrics
        self._pending = 0
        self._queue: deque[_Item] = deque()
        self._running = False
        self._in_flight: set[asyncio.Future[BatchResult]] = set()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def pending(self) -> int:
        """Texts accepted and not yet answered."""
        return self._pending

    def start(self) -> None:
        """Start dispatching, and again whenever a restarted worker comes back."""
        self._running = True
        self._pool.on_available(self._pump)
        self._pump()

    async def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """Queue ``texts`` and wait for their predictions, in order."""
        if not self._running:
            raise ModelUnavailable("the model is not serving")
        if self._pending + len(texts) > self._max_pending:
            raise Overloaded("too many requests are queued; retry shortly", headers={"Retry-After": self._retry_after})
        loop = asyncio.get_running_loop()
        items = [_Item(text, loop.create_future()) for text in texts]
        self._pending += len(items)
        self._queue.extend(items)
        self._pump()
        if len(items) == 1:
            return [await items[0].future]
        return list(await asyncio.gather(*(item.future for item in items)))

    def _pump(self) -> None:
        """Give queued texts to idle workers until one or the other runs out."""
        while self._running and self._queue:
            worker = self._pool.take_idle()
            if worker is None:
                return
            self._send(worker)

    def _send(self, worker: Worker) -> None:
        """Send the next batch to ``worker``, which the caller holds; hand it back if nothing is left."""
        batch: list[_Item] = []
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            if item.future.done():  # the caller gave up (cancelled)
                self._pending -= 1
            else:
                batch.append(item)
        if not batch:
            self._pool.release(worker)
            return
        try:
            answer = worker.submit([item.text for item in batch])
        except ServiceError as exc:
            self._pending -= len(batch)
            self._pool.release(worker)
            self._fail(batch, exc)
            return
        self._in_flight.add(answer)
        answer.add_done_callback(partial(self._finished, worker, batch))

    def _finished(self, worker: Worker, batch: list[_Item], answer: asyncio.Future[BatchResult]) -> None:
        self._in_flight.discard(answer)
        self._pending -= len(batch)
        # NOTE: the worker's next batch leaves at the start of the loop's next round: after the
        # texts that arrived meanwhile are queued, before this batch's callers resume to write
        # their answers. Inference then overlaps that HTTP work instead of waiting for it.
        asyncio.get_running_loop().call_soon(self._next, worker)
        error = answer.exception() if not answer.cancelled() else ModelUnavailable("the model is shutting down")
        if error is None:
            self._answer(batch, answer.result())
        elif isinstance(error, ServiceError):
            self._fail(batch, error)
        else:
            log.error("inference failed for a batch of %d", len(batch), exc_info=error)
            self._fail(batch, ServiceError("inference failed"))

    def _next(self, worker: Worker) -> None:
        """Give ``worker`` the next batch, or hand it back to the pool."""
        if self._running and self._queue and worker.alive:
            self._send(worker)
        else:
            self._pool.release(worker)

    def _answer(self, batch: list[_Item], result: BatchResult) -> None:
        probabilities = array("f", result.probabilities)
        k = self._n_labels
        self._metrics.observe_batch(
            len(batch), result.seconds, [result.started - item.arrived for item in batch], result.labels
        )
        for i, item in enumerate(batch):
            if not item.future.done():
                item.future.set_result(Prediction(result.labels[i], probabilities[i * k : (i + 1) * k]))

    def _fail(self, batch: list[_Item], error: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    async def stop(self) -> None:
        """Stop: queued texts fail with 503 at once; batches already with a worker finish."""
        self._running = False
        queued = list(self._queue)
        self._queue.clear()
        self._pending -= len(queued)
        self._fail(queued, ModelUnavailable("the model is shutting down"))
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
