"""Inference workers: one single-process executor per worker, each rebuilt if its process dies.

One executor per worker (rather than one executor of N processes) confines a crash to the
requests that worker held: a dead process breaks only its own ``ProcessPoolExecutor``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from function import processes, remote
from function.errors import ModelUnavailable
from function.prediction import BatchResult

log = logging.getLogger(__name__)


class Worker:
    """One inference process behind its own executor."""

    def __init__(self, index: int, model_path: Path, start_timeout: float) -> None:
        self.index = index
        self._model_path = model_path
        self._start_timeout = start_timeout
        self._executor: ProcessPoolExecutor | None = None
        self.pid: int | None = None
        self.busy = False  # held by a batch
        self.queued = False  # waiting in the pool's idle queue

    @property
    def alive(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        """Start the process and wait until it has loaded and warmed the model."""
        executor = ProcessPoolExecutor(
            1, mp_context=processes.context(), initializer=remote.init, initargs=(str(self._model_path),)
        )
        loop = asyncio.get_running_loop()
        try:
            self.pid = await asyncio.wait_for(loop.run_in_executor(executor, remote.pid), self._start_timeout)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        self._executor = executor

    async def run(self, texts: list[str]) -> BatchResult:
        """Classify on this worker; a dead process raises ModelUnavailable and marks it down."""
        executor = self._executor
        if executor is None:
            raise ModelUnavailable("the inference worker is restarting; retry shortly")
        loop = asyncio.get_running_loop()
        try:
            result: BatchResult = await loop.run_in_executor(executor, remote.predict, texts)
            return result
        except BrokenProcessPool:
            if self._executor is executor:
                self.discard()
            raise ModelUnavailable("the inference worker stopped while handling this request; retry") from None

    def check(self) -> bool:
        """Whether the process is still usable; submitting to a broken executor fails at once."""
        if self._executor is None:
            return False
        try:
            self._executor.submit(remote.check).add_done_callback(_ignore)
        except (BrokenProcessPool, RuntimeError):
            self.discard()
            return False
        return True

    def discard(self) -> None:
        if self._executor is not None:
            log.warning("inference worker %d (pid %s) died", self.index, self.pid)
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def _ignore(future: object) -> None:
    """Done-callback for liveness probes: their result does not matter."""


class InferencePool:
    """N workers, a queue of idle ones, and a watchdog that replaces dead processes."""

    def __init__(
        self,
        model_path: Path,
        size: int,
        start_timeout: float,
        on_restart: Callable[[], None] = lambda: None,
        watch_interval: float = 0.5,
    ) -> None:
        self.workers = [Worker(i, model_path, start_timeout) for i in range(size)]
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._on_restart = on_restart
        self._watch_interval = watch_interval
        self._watchdog: asyncio.Task[None] | None = None
        self._restarting: set[int] = set()
        self._restarts: set[asyncio.Task[None]] = set()

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def alive(self) -> int:
        return sum(w.alive for w in self.workers)

    @property
    def ready(self) -> bool:
        """Every worker alive and warm."""
        return self._watchdog is not None and self.alive == self.size

    async def start(self) -> None:
        await asyncio.gather(*(w.start() for w in self.workers))
        for w in self.workers:
            self._enqueue(w)
        self._watchdog = asyncio.create_task(self._watch(), name="pool-watchdog")
        log.info("inference pool ready: %d workers, pids %s", self.size, [w.pid for w in self.workers])

    async def acquire(self) -> Worker:
        """Wait for an idle, live worker."""
        while True:
            w = await self._idle.get()
            w.queued = False
            if w.alive:
                w.busy = True
                return w
            self._restart_soon(w)

    def release(self, w: Worker) -> None:
        w.busy = False
        if w.alive:
            self._enqueue(w)
        else:
            self._restart_soon(w)

    def _enqueue(self, w: Worker) -> None:
        if not w.queued:
            w.queued = True
            self._idle.put_nowait(w)

    def _restart_soon(self, w: Worker) -> None:
        if w.index not in self._restarting:
            self._restarting.add(w.index)
            task = asyncio.create_task(self._restart(w), name=f"restart-worker-{w.index}")
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart(self, w: Worker) -> None:
        try:
            while True:
                try:
                    await w.start()
                    break
                except Exception:
                    log.exception("inference worker %d failed to start; retrying", w.index)
                    await asyncio.sleep(1.0)
            log.info("inference worker %d restarted (pid %s)", w.index, w.pid)
            self._on_restart()
            if not w.busy:
                self._enqueue(w)
        finally:
            self._restarting.discard(w.index)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_interval)
            for w in self.workers:
                # NOTE: busy workers are left to their batch, which sees the failure itself.
                if not w.busy and w.index not in self._restarting and not w.check():
                    self._restart_soon(w)

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for task in self._restarts:
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.workers))
