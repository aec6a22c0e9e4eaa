"""One inference process behind a typed handle (start, predict, probe, kill, stop) and its state machine.

Each worker has a single-process executor of its own, so a process that dies or hangs breaks only
its own executor and fails only the call it held. A second call may be made while one runs: it
waits in the executor's pipe and starts the moment the first ends, so that the process does not
sit idle while its answer travels to the event loop and the next call travels back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar, TypeVarTuple

from function.errors import ModelUnavailable
from function.inference.messages import BatchResult, WorkerConfig
from function.parallel import worker
from function.parallel.calls import Broken, Call, Expired, NotSent
from function.parallel.forkserver import context

log = logging.getLogger(__name__)

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

#: How long a probe's answer may take. A probe is a round trip to a process that has nothing else
#: to do; 2 s is far beyond any seen (under 1 ms).
PROBE_TIMEOUT = 2.0


class State(enum.Enum):
    STOPPED = "stopped"  # no process: not started yet, or stopped for good
    STARTING = "starting"  # the process is loading and warming the model
    READY = "ready"  # alive: takes calls
    DEAD = "dead"  # exited, killed, or failed to start: waiting to be started again


_MOVES = {
    State.STOPPED: {State.STARTING},
    State.STARTING: {State.READY, State.DEAD, State.STOPPED},
    State.READY: {State.DEAD, State.STOPPED},
    State.DEAD: {State.STARTING, State.STOPPED},
}


class WorkerProcess:
    """One inference process; every change of its state goes through ``_move``."""

    def __init__(
        self,
        index: int,
        config: WorkerConfig,
        *,
        start_timeout: float,
        inference_timeout: float,
        on_dead: Callable[[WorkerProcess], None] = lambda _: None,
    ) -> None:
        self.index = index
        self.state = State.STOPPED
        self.pid: int | None = None
        self.last_used = 0.0  # loop.time() when the last call ended
        self._config = config
        self._start_timeout = start_timeout
        self._inference_timeout = inference_timeout
        self._on_dead = on_dead
        self._executor: ProcessPoolExecutor | None = None
        self._last_call: asyncio.Future[Any] | None = None  # the latest call made, until it ends

    def __repr__(self) -> str:
        return f"worker {self.index} (pid {self.pid}, {self.state.value})"

    @property
    def alive(self) -> bool:
        return self.state is State.READY

    @property
    def quiet(self) -> bool:
        """Alive with no call in flight."""
        return self.alive and self._last_call is None

    def _move(self, to: State) -> None:
        if to not in _MOVES[self.state]:
            raise RuntimeError(f"{self}: cannot go from {self.state.value} to {to.value}")
        self.state = to
        if to is State.DEAD:
            self._on_dead(self)

    async def start(self) -> None:
        """Start a process (the first, or a replacement) and wait until it has loaded and warmed the model."""
        self._move(State.STARTING)
        self.pid = None
        executor = ProcessPoolExecutor(
            1, mp_context=context(), initializer=worker.init, initargs=(self._config, os.getpid())
        )
        self._executor = executor
        loop = asyncio.get_running_loop()
        try:
            self.pid = await asyncio.wait_for(loop.run_in_executor(executor, worker.probe), self._start_timeout)
        except BaseException:
            self._discard()
            if self.state is State.STARTING:
                self._move(State.DEAD)
            raise
        self.last_used = loop.time()
        self._move(State.READY)

    def predict(self, texts: list[str], explain: tuple[int, ...] = ()) -> Call[BatchResult]:
        """Classify ``texts`` (explaining those at ``explain``): sent now, behind the call in flight if
        any; awaiting the call gives the result within the inference deadline, counted from its start.

        NotSent, at once or on awaiting, when the process had ended before the call could start."""
        return self._send(worker.predict, (texts, explain), self._inference_timeout)

    def probe(self) -> Call[int]:
        """A round trip that proves the process alive and not stuck (its pid), within ``PROBE_TIMEOUT``."""
        return self._send(worker.probe, (), PROBE_TIMEOUT)

    def _send(self, function: Callable[[*Ts], R], args: tuple[*Ts], within: float) -> Call[R]:
        executor = self._executor
        if self.state is not State.READY or executor is None:
            raise NotSent("the inference worker is restarting; retry shortly")
        try:
            running = asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except BrokenProcessPool:  # it died before this call (idle, or running the one before): nothing was sent
            self.kill("it had exited")
            raise NotSent("the inference worker had exited") from None
        before, self._last_call = self._last_call, running
        return Call(self, running, before, executor, within)

    async def answer(self, call: Call[R]) -> R:
        """The result of ``call``. ModelUnavailable if the process dies, or takes longer than the call's
        deadline once it has started (then it is killed): either way it is dead afterwards and the pool
        replaces it. NotSent if the process ended before it could start the call."""
        try:
            return await call.outcome()
        except Expired:
            if self._executor is call.executor:
                self.kill(f"it did not answer within {call.within:g} s")
            raise ModelUnavailable(f"the inference worker did not answer within {call.within:g} s; retry") from None
        except Broken:
            if self._executor is call.executor:
                self.kill("it exited")
            raise ModelUnavailable("the inference worker stopped while handling this request; retry") from None
        finally:
            if self._last_call is call.future:
                self._last_call = None
            self.last_used = asyncio.get_running_loop().time()

    def kill(self, reason: str) -> None:
        """The process is of no more use: SIGKILL it (it may be hung, or stopped) and mark it dead."""
        log.warning("inference worker %d (pid %s) is replaced: %s", self.index, self.pid, reason)
        self._discard()
        self._move(State.DEAD)

    def _sigkill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _discard(self) -> None:
        executor, self._executor = self._executor, None
        self._last_call = None
        self._sigkill()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def stop(self, grace: float) -> None:
        """Let the process finish its calls and exit; SIGKILL it if that takes longer than ``grace`` seconds."""
        executor, self._executor = self._executor, None
        if self.state is not State.STOPPED:
            self._move(State.STOPPED)
        if executor is None:
            return
        shutdown = asyncio.ensure_future(asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True))
        done, _ = await asyncio.wait({shutdown}, timeout=grace)
        if not done:
            log.warning("inference worker %d (pid %s) did not stop within %g s: killed", self.index, self.pid, grace)
            self._sigkill()
            await shutdown
