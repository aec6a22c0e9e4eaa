"""N inference processes: idle ones handed out in turn, idle ones probed, dead ones replaced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from function.errors import ModelUnavailable
from function.inference import worker
from function.inference.messages import BatchResult, WorkerConfig
from function.inference.process import Call, State, WorkerProcess

log = logging.getLogger(__name__)

#: How often idle workers are probed, and how long a probe's answer may take. A probe is a
#: round trip to a process that has nothing else to do; 2 s is far beyond any seen (under 1 ms).
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 2.0
#: Starts in a row that may fail before readiness and liveness turn to failure: about 2 s of
#: trying (0.5 s, then 1 s between attempts). The attempts go on, doubling up to 30 s apart, and
#: a success makes the service healthy again.
RESTART_BUDGET = 3
RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


class InferencePool:
    """Hands out idle workers (``acquire`` / ``release``), runs batches on them, and supervises them."""

    def __init__(
        self,
        size: int,
        config: WorkerConfig,
        *,
        start_timeout: float,
        inference_timeout: float,
        on_restart: Callable[[], None] = lambda: None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.workers = [WorkerProcess(i, config, start_timeout) for i in range(size)]
        self._inference_timeout = inference_timeout
        self._on_restart = on_restart
        self._probe_interval = probe_interval
        self._idle: deque[WorkerProcess] = deque()  # exactly the IDLE workers, longest idle first
        self._waiters: deque[asyncio.Future[WorkerProcess]] = deque()
        self._failed_starts = [0] * size
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # probes and restarts in progress
        self._restarting: set[int] = set()

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def alive(self) -> int:
        return sum(w.alive for w in self.workers)

    @property
    def failed(self) -> bool:
        """A worker has failed to start ``RESTART_BUDGET`` times in a row."""
        return max(self._failed_starts) >= RESTART_BUDGET

    @property
    def ready(self) -> bool:
        """Supervised, and every worker alive and warm."""
        return self._supervisor is not None and self.alive == self.size

    async def start(self) -> None:
        """Start every worker; the first that cannot start fails the whole start."""
        try:
            await asyncio.gather(*(w.start() for w in self.workers))
        except BaseException:
            await self.stop(grace=5.0)
            raise
        for w in self.workers:
            self._offer(w)
        self._supervisor = asyncio.create_task(self._supervise(), name="pool-supervisor")
        log.info("inference pool ready: %d workers, pids %s", self.size, [w.pid for w in self.workers])

    async def acquire(self) -> WorkerProcess:
        """An idle worker, claimed for the caller; waits for one. ModelUnavailable once the pool has failed."""
        if self.failed:
            raise ModelUnavailable("the inference workers cannot be started; the service is unhealthy")
        if self._idle:
            w = self._idle.popleft()
            w.claim()
            return w
        waiter: asyncio.Future[WorkerProcess] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def release(self, w: WorkerProcess) -> None:
        """Give back a worker from ``acquire``; a dead one is replaced."""
        w.release()
        self._offer(w)

    @property
    def has_idle(self) -> bool:
        """A worker is waiting for work."""
        return bool(self._idle)

    def send(self, w: WorkerProcess, texts: list[str], explain: tuple[int, ...] = ()) -> Call[BatchResult]:
        """Hand ``texts`` to the claimed worker ``w`` to classify (explaining those at ``explain``)."""
        return w.send(worker.predict, texts, explain)

    async def answer(self, w: WorkerProcess, call: Call[BatchResult]) -> BatchResult:
        """The result of ``send``, within the inference deadline (counted from when the call starts)."""
        return await w.answer(call, within=self._inference_timeout)

    def _offer(self, w: WorkerProcess) -> None:
        if w.state is State.DEAD:
            self._restart_soon(w)
            return
        if w.state is not State.IDLE:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                w.claim()
                waiter.set_result(w)
                return
        self._idle.append(w)

    def _fail_waiters(self) -> None:
        error = ModelUnavailable("the inference workers cannot be started; the service is unhealthy")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _restart_soon(self, w: WorkerProcess) -> None:
        if w.index not in self._restarting and self._supervisor is not None:
            self._restarting.add(w.index)
            self._spawn(self._restart(w), f"restart-worker-{w.index}")

    async def _restart(self, w: WorkerProcess) -> None:
        try:
            while w.state is State.DEAD:
                try:
                    await w.start()
                except Exception as exc:
                    self._start_failed(w, exc)
                    await asyncio.sleep(RESTART_DELAYS[min(self._failed_starts[w.index], len(RESTART_DELAYS)) - 1])
                    continue
                if self.failed:
                    log.warning("inference worker %d started again: the service is healthy", w.index)
                self._failed_starts[w.index] = 0
                log.info("inference worker %d restarted (pid %s)", w.index, w.pid)
                self._on_restart()
                self._offer(w)
        finally:
            self._restarting.discard(w.index)

    def _start_failed(self, w: WorkerProcess, exc: Exception) -> None:
        self._failed_starts[w.index] += 1
        failures = self._failed_starts[w.index]
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if failures == RESTART_BUDGET:
            log.error(
                "inference worker %d failed to start %d times in a row (%s): readiness and liveness now fail",
                w.index,
                failures,
                reason,
            )
            self._fail_waiters()
        elif failures < RESTART_BUDGET:
            log.warning("inference worker %d failed to start (%s); retrying", w.index, reason)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._probe_interval)
            for w in self.workers:
                if w.state is State.DEAD:
                    self._restart_soon(w)
                elif w.state is State.IDLE and loop.time() - w.last_used >= self._probe_interval and w in self._idle:
                    self._idle.remove(w)
                    w.claim()
                    self._spawn(self._probe(w), f"probe-worker-{w.index}")

    async def _probe(self, w: WorkerProcess) -> None:
        with contextlib.suppress(ModelUnavailable):  # the worker is dead now: release() replaces it
            await w.call(worker.probe, within=PROBE_TIMEOUT)
        self.release(w)

    async def stop(self, grace: float) -> None:
        """Stop supervising, let each worker finish its call, and stop them all within ``grace`` seconds."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._idle.clear()
        await asyncio.gather(*(w.stop(grace) for w in self.workers))
