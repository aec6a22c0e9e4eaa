"""Adaptive micro-batching in two lanes bounded by characters: what runs together, never where.

Texts wait in one of two lanes by length. Whenever a worker has nothing to do, the dispatcher takes
a lane's queued texts as one onnxruntime call: up to ``batch_max_size`` short texts, or long texts
up to ``batch_max_chars`` characters (a text longer than that runs alone). Under light load a batch
is one text and nothing waits; under heavy load batches grow, and past ``max_pending`` texts new
work is refused at once.

Short texts run on at most ``short_text_workers`` workers at once (one fewer than the CPUs, so
that the event loop keeps one); a whole batch that no idle worker may take is queued behind a
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
from collections.abc import Sequence
from typing import Protocol

from function.batching.lanes import Batch, BatchSource, Item, Lane, fail
from function.errors import ModelUnavailable, Overloaded
from function.inference.classifier import Prediction, Timings
from function.inference.messages import BatchResult, decode
from function.metrics import Metrics

log = logging.getLogger(__name__)


class Executor(Protocol):
    """What runs the batches (``function.parallel.dispatcher.Dispatcher``)."""

    @property
    def size(self) -> int:
        """Workers."""
        ...

    @property
    def ready(self) -> bool: ...

    @property
    def failed(self) -> bool:
        """The workers cannot be started."""
        ...

    async def start(self, source: BatchSource) -> None: ...

    def wake(self) -> None:
        """Texts wait: hand out what may run."""
        ...

    async def stop(self, grace: float) -> None: ...


class AdaptiveBatcher:
    """The production ``Classifier``: bounded lanes of texts, taken as batches by the executor."""

    def __init__(
        self,
        executor: Executor,
        labels: Sequence[str],
        *,
        short_text_workers: int,
        batch_max_size: int,
        batch_max_chars: int,
        max_pending: int,
        metrics: Metrics,
    ) -> None:
        self.labels = tuple(labels)
        self.executor = executor
        workers, size = executor.size, batch_max_size
        self._short = Lane(
            "short", cap=max(1, min(short_text_workers, workers)), max_size=size, max_chars=None, pipelines=True
        )
        self._long = Lane("long", cap=max(1, workers - 1), max_size=size, max_chars=batch_max_chars, pipelines=False)
        self._long_text = max(1, batch_max_chars // batch_max_size)
        self._max_pending = max_pending
        self._metrics = metrics
        self._last_long = False  # the lane of the last batch taken while both lanes waited
        self._out: set[Batch] = set()  # handed to the executor and not yet settled
        self._running = False

    @property
    def ready(self) -> bool:
        return self._running and self.executor.ready

    @property
    def alive(self) -> bool:
        return not self.executor.failed

    @property
    def pending(self) -> int:
        """Texts accepted and not yet answered."""
        return len(self._short) + len(self._long) + sum(len(batch) for batch in self._out)

    async def start(self) -> None:
        """Start the executor, then take texts."""
        await self.executor.start(self)
        self._running = True
        log.info(
            "batching: up to %d short texts a call, on at most %d of the %d workers at once",
            self._short.max_size,
            self._short.cap,
            self.executor.size,
        )

    async def predict(
        self, texts: Sequence[str], explain: bool = False, timings: Timings | None = None
    ) -> list[Prediction]:
        """Queue ``texts`` and wait for their predictions (with explanations if ``explain``), in order;
        ``timings`` (a traced request's) get when they were queued, ran and were answered."""
        if not self._running:
            raise ModelUnavailable("the model is not serving")
        if self.executor.failed:
            raise ModelUnavailable("the inference workers cannot be started; the service is unhealthy")
        if self.pending + len(texts) > self._max_pending:
            raise Overloaded("too many requests are queued; retry shortly")
        loop = asyncio.get_running_loop()
        items = [Item(text, loop.create_future(), explain) for text in texts]
        for item in items:
            (self._long if len(item.text) > self._long_text else self._short).queue.append(item)
        self.executor.wake()
        if len(items) == 1:
            predictions = [await items[0].future]
        else:
            predictions = list(await asyncio.gather(*(item.future for item in items)))
        if timings is not None:
            ran = [item.ran for item in items if item.ran is not None]
            timings.queued, timings.texts = items[0].arrived, len(items)
            timings.started, timings.inferred = min(r[0] for r in ran), max(r[1] for r in ran)
            timings.answered = time.monotonic()
        return predictions

    def next_batch(self) -> Batch | None:
        """The batch of the lane whose turn it is (in turn when both may start)."""
        if not self._running:
            return None
        short, long = self._short.may_start, self._long.may_start
        if short and long:
            self._last_long = not self._last_long
            long = self._last_long
        return self._hand_out(self._long if long else self._short) if short or long else None

    def batch_behind(self) -> Batch | None:
        """A whole batch of short texts, unless long texts that may run are waiting for their turn."""
        if not self._running or not self._short.full or self._long.may_start:
            return None
        return self._hand_out(self._short)

    def _hand_out(self, lane: Lane) -> Batch | None:
        batch = lane.take()
        if batch is not None:
            self._out.add(batch)
        return batch

    def answered(self, batch: Batch, result: BatchResult) -> None:
        self._out.discard(batch)
        predictions = decode(result, len(self.labels))
        waits = [result.started - item.arrived for item in batch.items]
        self._metrics.observe_batch(result.seconds, waits, predictions)
        ran = (result.started, result.started + result.seconds)
        for item, prediction in zip(batch.items, predictions, strict=True):
            item.ran = ran
            if not item.future.done():
                item.future.set_result(prediction)

    def failed(self, batch: Batch, error: Exception) -> None:
        self._out.discard(batch)
        fail(batch.items, error)

    def returned(self, batch: Batch) -> None:
        if not self._running:  # stopping: nothing will take them
            self.failed(batch, ModelUnavailable("the model is shutting down"))
            return
        self._out.discard(batch)
        batch.lane.requeue(batch)

    def fail_queued(self, error: Exception) -> None:
        self._short.fail_all(error)
        self._long.fail_all(error)

    async def stop(self, grace: float) -> None:
        """Queued texts fail with 503 at once; batches already with a worker get ``grace`` seconds to finish."""
        self._running = False
        self.fail_queued(ModelUnavailable("the model is shutting down"))
        await self.executor.stop(grace)
