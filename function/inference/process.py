"""One inference process behind a typed handle (start, call, kill, stop) and its one state machine.

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
import multiprocessing
import multiprocessing.forkserver
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any, Generic, TypeVar, TypeVarTuple

from function.errors import ModelUnavailable
from function.inference import worker
from function.inference.messages import WorkerConfig

log = logging.getLogger(__name__)

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

# NOTE: forkserver, not fork: forking a process whose onnxruntime threads exist is unsafe.
# The forkserver preloads the worker's modules (onnxruntime, numpy) once, so each fork starts fast.
START_METHOD = "forkserver"
PRELOAD = ["function.inference.session", "function.inference.worker"]


def context() -> BaseContext:
    """The multiprocessing context every inference process comes from."""
    ctx = multiprocessing.get_context(START_METHOD)
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_forkserver() -> None:
    """Start the forkserver now, so that its preload (about 0.3 s) runs while the server imports aiohttp."""
    context()
    multiprocessing.forkserver.ensure_running()


class NotSent(ModelUnavailable):
    """The call never ran (the process had died while idle, or died or was killed during the call
    queued before it): it may be made elsewhere."""


@dataclass(frozen=True)
class Call(Generic[R]):
    """One call handed to a process: its future, the call ahead of it, and the executor it went to."""

    future: asyncio.Future[R]
    before: asyncio.Future[Any] | None
    executor: ProcessPoolExecutor


class State(enum.Enum):
    STOPPED = "stopped"  # no process: not started yet, or stopped for good
    STARTING = "starting"  # the process is loading and warming the model
    IDLE = "idle"  # alive and waiting for work
    BUSY = "busy"  # claimed by the pool for a batch or a probe
    DEAD = "dead"  # exited, killed, or failed to start: waiting to be started again


_MOVES = {
    State.STOPPED: {State.STARTING},
    State.STARTING: {State.IDLE, State.DEAD, State.STOPPED},
    State.IDLE: {State.BUSY, State.STOPPED},
    State.BUSY: {State.IDLE, State.DEAD, State.STOPPED},
    State.DEAD: {State.STARTING, State.STOPPED},
}


class WorkerProcess:
    """One inference process; every change of its state goes through ``_move``."""

    def __init__(self, index: int, config: WorkerConfig, start_timeout: float) -> None:
        self.index = index
        self.state = State.STOPPED
        self.pid: int | None = None
        self.last_used = 0.0  # loop.time() when the last call ended
        self._config = config
        self._start_timeout = start_timeout
        self._executor: ProcessPoolExecutor | None = None
        self._last_call: asyncio.Future[Any] | None = None  # the latest call made, until it ends

    def __repr__(self) -> str:
        return f"worker {self.index} (pid {self.pid}, {self.state.value})"

    @property
    def alive(self) -> bool:
        return self.state in (State.IDLE, State.BUSY)

    def _move(self, to: State) -> None:
        if to not in _MOVES[self.state]:
            raise RuntimeError(f"{self}: cannot go from {self.state.value} to {to.value}")
        self.state = to

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
        self._move(State.IDLE)

    def claim(self) -> None:
        """Reserve this idle process for one batch or probe (the pool's doing)."""
        self._move(State.BUSY)

    def release(self) -> None:
        """Give a claimed process back; a process that died meanwhile stays dead."""
        if self.state is State.BUSY:
            self._move(State.IDLE)

    def send(self, function: Callable[[*Ts], R], *args: *Ts) -> Call[R]:
        """Hand ``function(*args)`` to the process now; it runs after the call sent before it, if any."""
        executor = self._executor
        if self.state is not State.BUSY or executor is None:
            raise NotSent("the inference worker is restarting; retry shortly")
        try:
            running = asyncio.get_running_loop().run_in_executor(executor, function, *args)
        except BrokenProcessPool:  # it died before this call (idle, or running the one before): nothing was sent
            self.kill("it had exited")
            raise NotSent("the inference worker had exited") from None
        before, self._last_call = self._last_call, running
        return Call(running, before, executor)

    async def answer(self, call: Call[R], within: float | None = None) -> R:
        """The result of a call from ``send``. ModelUnavailable if the process dies, or takes longer than
        ``within`` once the call has started (then it is killed): either way it is dead afterwards and
        the pool replaces it. NotSent if the process ended before it could start the call."""
        loop = asyncio.get_running_loop()
        running, before, executor = call.future, call.before, call.executor
        # NOTE: a timer rather than asyncio.wait_for, which (Python 3.11) makes a task of every call.
        expired = False
        timer: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal expired
            expired = True
            running.cancel()  # safe: the executor's late answer to a cancelled future is dropped

        def start_timer(_: object = None) -> None:
            nonlocal timer
            if within is not None and not running.done():
                timer = loop.call_later(within, expire)

        if before is None or before.done():
            start_timer()
        else:  # the process starts this call once it has answered the one before
            before.add_done_callback(start_timer)
        try:
            return await running
        except (BrokenProcessPool, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelling():
                raise
            if not _succeeded(before):  # the process died, or was killed, before it took this call
                raise NotSent("the inference worker stopped before this call started") from None
            if expired:
                if self._executor is executor:
                    self.kill(f"it did not answer within {within:g} s")
                raise ModelUnavailable(f"the inference worker did not answer within {within:g} s; retry") from None
            if self._executor is executor:
                self.kill("it exited")
            raise ModelUnavailable("the inference worker stopped while handling this request; retry") from None
        finally:
            if before is not None:
                before.remove_done_callback(start_timer)
            if timer is not None:
                timer.cancel()
            if self._last_call is running:
                self._last_call = None
            self.last_used = loop.time()

    async def call(self, function: Callable[[*Ts], R], *args: *Ts, within: float | None = None) -> R:
        """``send``, then ``answer``."""
        return await self.answer(self.send(function, *args), within)

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
        self._sigkill()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def stop(self, grace: float) -> None:
        """Let the process finish its call and exit; SIGKILL it if that takes longer than ``grace`` seconds."""
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


def _succeeded(call: asyncio.Future[Any] | None) -> bool:
    """Whether ``call`` (None: there was none) has ended with an answer."""
    return call is None or (call.done() and not call.cancelled() and call.exception() is None)


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (rather than the call it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
