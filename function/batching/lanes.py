"""Lanes of texts waiting for a worker, the batches taken from them, and what a batch source offers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from function.inference.classifier import Prediction
from function.inference.messages import BatchResult


class Item:
    """One text waiting for its prediction."""

    __slots__ = ("arrived", "explain", "future", "ran", "text")

    def __init__(self, text: str, future: asyncio.Future[Prediction], explain: bool) -> None:
        self.text = text
        self.future = future
        self.explain = explain
        self.arrived = time.monotonic()  # same clock as the worker's start stamp
        self.ran: tuple[float, float] | None = None  # its call's start and end in the worker, once answered


class Batch:
    """Texts of one lane that go to a worker as one onnxruntime call."""

    __slots__ = ("items", "lane")

    def __init__(self, items: list[Item], lane: Lane) -> None:
        self.items = items
        self.lane = lane

    def __len__(self) -> int:
        return len(self.items)

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items]

    @property
    def explain(self) -> tuple[int, ...]:
        """The positions of the texts whose caller asked for an explanation."""
        return tuple(i for i, item in enumerate(self.items) if item.explain)


def fail(items: Iterable[Item], error: Exception) -> None:
    """Answer ``items`` with ``error`` (those whose caller is still waiting)."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


class Lane:
    """Texts of one size class, in order, and the workers running its batches: at most ``cap`` at once.

    A batch holds up to ``max_size`` texts and, if ``max_chars`` is set, no more characters than that
    (a text longer runs alone). Batches of a lane that ``pipelines`` may wait behind a running one
    on the same worker.
    """

    def __init__(self, name: str, *, cap: int, max_size: int, max_chars: int | None, pipelines: bool) -> None:
        self.name = name
        self.cap = cap
        self.max_size = max_size
        self.max_chars = max_chars
        self.pipelines = pipelines
        self.queue: deque[Item] = deque()
        self.running = 0  # workers running this lane's batches

    def __len__(self) -> int:
        return len(self.queue)

    @property
    def may_start(self) -> bool:
        """Texts wait, and fewer workers than ``cap`` run this lane."""
        return bool(self.queue) and self.running < self.cap

    @property
    def full(self) -> bool:
        """A whole batch waits."""
        return len(self.queue) >= self.max_size

    def take(self) -> Batch | None:
        """The next batch, None if no text waits; texts whose caller gave up are dropped on the way."""
        queue, chars = self.queue, 0
        items: list[Item] = []
        while queue and len(items) < self.max_size:
            item = queue[0]
            if item.future.done():  # cancelled: the client went away
                queue.popleft()
                continue
            if self.max_chars is not None and items and chars + len(item.text) > self.max_chars:
                break
            items.append(queue.popleft())
            chars += len(item.text)
        return Batch(items, self) if items else None

    def enter(self) -> None:
        """A worker starts running this lane's batches."""
        self.running += 1

    def leave(self) -> None:
        """A worker has no batch of this lane left."""
        self.running -= 1

    def requeue(self, batch: Batch) -> None:
        """Texts that never ran go back to the front, in their order."""
        self.queue.extendleft(reversed(batch.items))

    def fail_all(self, error: Exception) -> None:
        """Every waiting text fails with ``error``, and the lane is empty."""
        fail(self.queue, error)
        self.queue.clear()


class BatchSource(Protocol):
    """What decides what runs together (the adaptive batcher), as the dispatcher sees it."""

    def next_batch(self) -> Batch | None:
        """The batch for a worker with nothing to do, None when no lane may start one."""
        ...

    def batch_behind(self) -> Batch | None:
        """A whole batch worth queueing behind a running one of a lane that ``pipelines``, or None."""
        ...

    def answered(self, batch: Batch, result: BatchResult) -> None: ...

    def failed(self, batch: Batch, error: Exception) -> None: ...

    def returned(self, batch: Batch) -> None:
        """The batch never ran: its texts wait again, first in their lane."""
        ...

    def fail_queued(self, error: Exception) -> None:
        """Nothing will run what waits: it fails with ``error``."""
        ...
