"""Adaptive micro-batching in front of the inference pool.

Texts wait in one queue; whenever a worker is idle, everything queued (up to ``max_batch``)
goes to it as one onnxruntime call. Under light load a batch is one text and nothing waits;
under heavy load batches grow, and past ``max_pending`` texts new work is refused at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections.abc import Sequence

from function.errors import ModelUnavailable, Overloaded, ServiceError
from function.metrics import Metrics
from function.pool import InferencePool, Worker
from function.prediction import Prediction

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
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def pending(self) -> int:
        """Texts accepted and not yet answered."""
        return self._pending

    def start(self) -> None:
        """Bind the queue to the running loop and start dispatching."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._dispatch(), name="batcher")

    async def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """Queue ``texts`` and wait for their predictions, in order."""
        if self._queue is None or not self.running:
            raise ModelUnavailable("the model is not serving")
        if self._pending + len(texts) > self._max_pending:
            raise Overloaded("too many requests are queued; retry shortly", headers={"Retry-After": self._retry_after})
        loop = asyncio.get_running_loop()
        items = [_Item(text, loop.create_future()) for text in texts]
        self._pending += len(items)
        for item in items:
            self._queue.put_nowait(item)
        if len(items) == 1:
            return [await items[0].future]
        return list(await asyncio.gather(*(item.future for item in items)))

    async def _dispatch(self) -> None:
        assert self._queue is not None
        queue = self._queue
        batch: list[_Item] = []  # taken from the queue, not yet handed to a worker
        try:
            while True:
                batch = [await queue.get()]
                worker = await self._pool.acquire()
                while len(batch) < self._max_batch and not queue.empty():
                    batch.append(queue.get_nowait())
                live = [item for item in batch if not item.future.done()]  # drop cancelled waiters
                self._pending -= len(batch) - len(live)
                batch = []
                if not live:
                    self._pool.release(worker)
                    continue
                task = asyncio.create_task(self._run(worker, live))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        except BaseException as exc:
            # NOTE: nobody would ever answer what is still queued: fail every waiter.
            error = ModelUnavailable("the model is shutting down")
            while not queue.empty():
                batch.append(queue.get_nowait())
            self._fail(batch, error)
            self._pending -= len(batch)
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("batcher stopped")
            raise

    async def _run(self, worker: Worker, batch: list[_Item]) -> None:
        try:
            result = await worker.run([item.text for item in batch])
        except ServiceError as exc:
            self._fail(batch, exc)
        except Exception:
            log.exception("inference failed for a batch of %d", len(batch))
            self._fail(batch, ServiceError("inference failed"))
        else:
            probabilities = array("f", result.probabilities)
            k = self._n_labels
            self._metrics.observe_batch(
                len(batch), result.seconds, [result.started - item.arrived for item in batch], result.labels
            )
            for i, item in enumerate(batch):
                if not item.future.done():
                    item.future.set_result(Prediction(result.labels[i], probabilities[i * k : (i + 1) * k]))
        finally:
            self._pending -= len(batch)
            self._pool.release(worker)

    def _fail(self, batch: list[_Item], error: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    async def stop(self) -> None:
        """Stop: queued texts fail with 503 at once; batches already with a worker finish."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
