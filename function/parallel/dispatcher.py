"""Which worker runs each batch: the only record of what every worker is running.

A worker with nothing to do takes the batch source's next batch. While a worker runs a batch of a
lane that pipelines and nothing waits behind it, a whole batch that no idle worker may take is
queued behind it, so that the worker goes from one call to the next without waiting for the event
loop (``WorkerProcess.predict`` sends at once; the process starts the call when the one before ends).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from function.batching.lanes import Batch, BatchSource
from function.errors import ModelUnavailable, ServiceError
from function.inference.messages import BatchResult
from function.parallel.calls import Call, NotSent
from function.parallel.pool import WorkerPool
from function.parallel.process import WorkerProcess

log = logging.getLogger(__name__)


class Dispatcher:
    """Runs the batches of one source on the pool's workers."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._source: BatchSource | None = None
        self._idle: deque[WorkerProcess] = deque()  # alive with nothing in flight, longest idle first
        #: The batches in flight on each busy worker, in the order it runs them; the worker whose
        #: current batch started longest ago first.
        self._flights: dict[WorkerProcess, list[Batch]] = {}
        self._calls: set[asyncio.Task[None]] = set()

    @property
    def size(self) -> int:
        return self.pool.size

    @property
    def ready(self) -> bool:
        return self._source is not None and self.pool.ready

    @property
    def failed(self) -> bool:
        return self.pool.failed

    @property
    def busy(self) -> list[WorkerProcess]:
        """The workers running a batch now."""
        return list(self._flights)

    async def start(self, source: BatchSource) -> None:
        """Start the pool, then run ``source``'s batches."""
        await self.pool.start(on_ready=self._ready, on_dead=self._dead)
        self._source = source
        self.wake()

    def _ready(self, worker: WorkerProcess) -> None:
        self._idle.append(worker)
        self.wake()

    def _dead(self, worker: WorkerProcess) -> None:
        if worker in self._idle:
            self._idle.remove(worker)
        if self.pool.failed and self._source is not None:
            self._source.fail_queued(unhealthy())

    def wake(self) -> None:
        """Hand out work: to each idle worker, then behind running batches while whole ones wait."""
        source = self._source
        if source is None:
            return
        if self.pool.failed:
            source.fail_queued(unhealthy())
            return
        while self._idle:
            batch = source.next_batch()
            if batch is None:
                break
            self._send(self._idle.popleft(), batch)
        for worker, flight in list(self._flights.items()):
            if len(flight) == 1 and flight[0].lane.pipelines:
                batch = source.batch_behind()
                if batch is None:
                    break
                self._send(worker, batch)

    def _send(self, worker: WorkerProcess, batch: Batch) -> None:
        assert self._source is not None
        try:
            call = worker.predict(batch.texts, batch.explain)
        except NotSent:  # it had died: the texts go back, for another worker
            self._source.returned(batch)
            return
        flight = self._flights.setdefault(worker, [])
        if not flight:
            batch.lane.enter()
        flight.append(batch)
        task = asyncio.create_task(self._finish(worker, call, batch))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _finish(self, worker: WorkerProcess, call: Call[BatchResult], batch: Batch) -> None:
        """Wait for one call: its texts are answered, failed, or handed back; then the worker's next work."""
        source = self._source
        assert source is not None
        try:
            result = await call
        except NotSent:  # the worker died before it took the call: the texts may run elsewhere
            source.returned(batch)
        except ServiceError as exc:
            source.failed(batch, exc)
        except asyncio.CancelledError:
            source.failed(batch, ModelUnavailable("the model is shutting down"))
            raise
        except Exception:
            log.exception("inference failed for a batch of %d", len(batch))
            source.failed(batch, ServiceError("inference failed"))
        else:
            source.answered(batch, result)
        finally:
            flight = self._flights.pop(worker)
            flight.remove(batch)
            if flight:  # the batch behind runs now: the worker goes last among the busy
                self._flights[worker] = flight
            else:
                batch.lane.leave()
                if worker.alive and worker not in self._idle:  # not already back, restarted
                    self._idle.append(worker)
            self.wake()

    async def stop(self, grace: float) -> None:
        """Stop the pool (each worker finishes its calls within ``grace`` seconds), then settle every call."""
        await self.pool.stop(grace)
        self._idle.clear()
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)


def unhealthy() -> ModelUnavailable:
    return ModelUnavailable("the inference workers cannot be started; the service is unhealthy")
