"""The worker's side of the process boundary: the functions an inference process runs.

They are handed to the executor by reference (``WorkerProcess.predict`` calls ``worker.predict``), so a reader and
mypy can follow every call into a worker.
NOTE: the server imports this module for those references, so it imports nothing heavy at the top:
onnxruntime and numpy come in through ``function.inference.session``, imported inside the
functions that run in a worker, where the forkserver has preloaded it and the import is free.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import threading
import time
from typing import TYPE_CHECKING

from function.heap import QUIET_SECONDS, ActivityClock, IdleTrim
from function.inference.messages import BatchResult, WorkerConfig
from function.logs import configure_logging

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

WARM_UP_TEXT = "The shuttle launch was delayed; the goalie made 40 saves; encrypt the key."
_PR_SET_PDEATHSIG = 1
#: How much lower than the server's a worker's CPU priority is (bench/README.md, decisions).
WORKER_NICENESS = 5


class _Worker:
    """This process's session and what its heap trimmer watches."""

    session: InferenceSession | None = None
    batches = ActivityClock()  # ticks once per call to predict()
    busy = False


_state = _Worker()


def init(config: WorkerConfig, server: int) -> None:
    """Executor initializer, once per process before any task: load the model and warm it up.

    The process ends with the server (pid ``server``) and with its parent, the forkserver,
    however they end: no worker outlives the service.
    """
    from function.inference import session as onnx_session

    # NOTE: Ctrl-C reaches the whole process group; the server decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    # NOTE: the server's event loop, and the executor threads that hand it results, should get a
    # CPU the moment they are runnable: one descheduled while holding the GIL stops the whole loop.
    os.nice(WORKER_NICENESS)
    configure_logging(config.log_format, config.log_level)
    _state.session = onnx_session.load_session(config.take_model())
    predict([WARM_UP_TEXT])
    threading.Thread(target=_watch, args=(server,), name="watch", daemon=True).start()


def predict(texts: list[str], explain: tuple[int, ...] = (), session: InferenceSession | None = None) -> BatchResult:
    """Classify ``texts``, explaining those at the indices ``explain``; ``session`` defaults to this worker's."""
    from function.inference import session as onnx_session

    session = session or _state.session
    if session is None:
        raise RuntimeError("worker not initialised: call init() first")
    _state.batches.tick()
    _state.busy = True
    try:
        started = time.monotonic()
        out = onnx_session.predict(session, texts, explain)
        return BatchResult(
            out.labels,
            out.probabilities.tobytes(),
            out.tokens.tobytes(),
            out.unknown.tobytes(),
            started,
            time.monotonic() - started,
            out.explanations,
        )
    finally:
        _state.busy = False


def probe() -> int:
    """This worker's process id. Its answer proves the process is alive and not stuck."""
    return os.getpid()


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent, the forkserver, exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: rely on the executor's pipes alone
        return
    if os.getppid() == 1:  # the parent was gone before the request was made
        os._exit(1)


def _watch(server: int) -> None:
    """The worker's one thread: end this process as soon as the server (pid ``server``) has ended,
    SIGKILL included; meanwhile, give the heap a burst grew back to the OS once the burst is over
    (never during a call).

    NOTE: the forkserver cannot end its workers for the server: each holds a copy of the pipe it watches.
    """
    try:
        ended = os.pidfd_open(server)
    except ProcessLookupError:
        os._exit(1)
    except OSError:  # no pidfd (Linux before 5.3): ask every time instead
        ended = -1
    idle = IdleTrim()
    while True:
        if ended >= 0:
            readable, _, _ = select.select([ended], [], [], QUIET_SECONDS / 2)
            if readable:  # the server has exited
                os._exit(1)
        else:
            time.sleep(QUIET_SECONDS / 2)
            if not _alive(server):
                os._exit(1)
        if not _state.busy:
            idle.observe(_state.batches.ticks)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
