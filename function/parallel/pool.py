"""N inference processes, started, probed while quiet, replaced when dead; what happens is told through hooks.

The pool never decides what a worker runs (``function.parallel.dispatcher`` does): it reports each
worker that becomes ready (``on_ready``) and each that dies or fails to start (``on_dead``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from function.errors import ModelUnavailable
from function.inference.messages import WorkerConfig
from function.parallel.process import State, WorkerProcess

log = logging.getLogger(__name__)

#: How often quiet workers are probed (and dead ones looked at).
PROBE_INTERVAL = 0.5
#: Starts in a row that may fail before readiness and liveness turn to failure: about 2 s of
#: trying (0.5 s, then 1 s between attempts). The attempts go on, doubling up to 30 s apart, and
#: a success makes the service healthy again.
RESTART_BUDGET = 3
RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)

Hook = Callable[[WorkerProcess], None]


class WorkerPool:
    """Starts, probes, restarts and stops the inference processes."""

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
        self.workers = [
            WorkerProcess(
                i, config, start_timeout=start_timeout, inference_timeout=inference_timeout, on_dead=self._died
            )
            for i in range(size)
        ]
        self._on_restart = on_restart
        self._probe_interval = probe_interval
        self._on_ready: Hook = lambda _: None
        self._on_dead: Hook = lambda _: None
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

    async def start(self, on_ready: Hook, on_dead: Hook) -> None:
        """Start every worker (the first that cannot start fails the whole start), then supervise them;
        ``on_ready`` hears of every worker ready to take calls, ``on_dead`` of every one that died or
        failed to start."""
        try:
            await asyncio.gather(*(w.start() for w in self.workers))
        except BaseException:
            await self.stop(grace=5.0)
            raise
        self._on_ready, self._on_dead = on_ready, on_dead
        self._supervisor = asyncio.create_task(self._supervise(), name="pool-supervisor")
        log.info("inference pool ready: %d workers, pids %s", self.size, [w.pid for w in self.workers])
        for w in self.workers:
            on_ready(w)

    def _died(self, w: WorkerProcess) -> None:
        if w.index not in self._restarting:  # a failed restart is told by _start_failed, once counted
            self._on_dead(w)
            self._restart_soon(w)

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
                self._on_ready(w)
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
        elif failures < RESTART_BUDGET:
            log.warning("inference worker %d failed to start (%s); retrying", w.index, reason)
        self._on_dead(w)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._probe_interval)
            for w in self.workers:
                if w.state is State.DEAD:
                    self._restart_soon(w)
                elif w.quiet and loop.time() - w.last_used >= self._probe_interval:
                    self._spawn(self._probe(w), f"probe-worker-{w.index}")

    async def _probe(self, w: WorkerProcess) -> None:
        # NOTE: a call that arrives meanwhile waits behind the probe in the process's pipe (under 1 ms).
        with contextlib.suppress(ModelUnavailable):  # it is dead now, and being replaced
            await w.probe()

    async def stop(self, grace: float) -> None:
        """Stop supervising, let each worker finish its calls, and stop them all within ``grace`` seconds."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop(grace) for w in self.workers))
