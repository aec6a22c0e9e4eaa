"""The signals that stop the service, from its first line until the event loop handles them.

Standard library only: ``function.__main__`` imports it before anything else, so that a stop
signal has a handler from the service's first line. As PID 1 (a container without an init) that
is what keeps an early SIGTERM from being lost: the kernel drops any signal PID 1 has no handler for.

Until the event loop takes over, the handler only remembers the signal, and the start-up stops
at its next step (``stop_requested``). It raises nothing: an exception raised by a handler lands
wherever the main thread is, a C extension's initialisation included, and orjson's then crashes
the interpreter (a segmentation fault, measured).
"""

from __future__ import annotations

import signal
from types import FrameType

#: Every signal a process manager sends to stop a service; each starts the same graceful drain.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_received: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def remember_stop_signals() -> None:
    """Until the event loop takes over, a stop signal is remembered for the start-up to act on."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _remember)


def stop_requested() -> int | None:
    """The first stop signal received before the event loop took over, if any."""
    return _received[0] if _received else None


def ignore_stop_signals() -> None:
    """After the drain: a signal arriving while the process exits changes nothing (never 143)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
