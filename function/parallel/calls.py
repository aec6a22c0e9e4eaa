"""A call in flight to one inference process, and its deadline, counted from when the process starts it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, Protocol, TypeVar

from function.errors import ModelUnavailable

R = TypeVar("R")


class NotSent(ModelUnavailable):
    """The call never ran (the process had died while idle, or died or was killed during the call
    queued before it): it may be made elsewhere."""


class Expired(Exception):
    """The process took longer than the call's deadline: it is hung or far too slow."""


class Broken(Exception):
    """The process ended while it ran the call."""


class Process(Protocol):
    """What a call is made to (``function.parallel.process.WorkerProcess``)."""

    def answer(self, call: Call[R], /) -> Coroutine[Any, Any, R]: ...


class Call(Generic[R]):
    """One call handed to a process; awaiting it gives its result (see ``WorkerProcess.predict``)."""

    __slots__ = ("before", "executor", "future", "process", "within")

    def __init__(
        self,
        process: Process,
        future: asyncio.Future[R],
        before: asyncio.Future[Any] | None,
        executor: ProcessPoolExecutor,
        within: float,
    ) -> None:
        self.process = process
        self.future = future
        self.before = before  # the call the process runs first, if any
        self.executor = executor
        self.within = within  # seconds from when the process starts the call

    def __await__(self) -> Generator[Any, None, R]:
        return self.process.answer(self).__await__()

    async def outcome(self) -> R:
        """The result; NotSent, Expired or Broken when there is none."""
        loop = asyncio.get_running_loop()
        running, before = self.future, self.before
        # NOTE: a timer rather than asyncio.wait_for, which (Python 3.11) makes a task of every call.
        expired = False
        timer: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal expired
            expired = True
            running.cancel()  # safe: the executor's late answer to a cancelled future is dropped

        def start_timer(_: object = None) -> None:
            nonlocal timer
            if not running.done():
                timer = loop.call_later(self.within, expire)

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
            raise Expired() if expired else Broken() from None
        finally:
            if before is not None:
                before.remove_done_callback(start_timer)
            if timer is not None:
                timer.cancel()


def _succeeded(call: asyncio.Future[Any] | None) -> bool:
    """Whether ``call`` (None: there was none) has ended with an answer."""
    return call is None or (call.done() and not call.cancelled() and call.exception() is None)


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (rather than the call it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
