"""The signals that stop the service, and what they do before and after the event loop handles them.

Standard library only: ``function.__main__`` imports it before anything else, so that a stop
signal has a handler from the service's first line. As PID 1 (a container without an init) that
is what makes an early SIGTERM count: the kernel drops any signal PID 1 has no handler for.
"""

from __future__ import annotations

import signal
from types import FrameType

#: Every signal a process manager sends to stop a service; each starts the same graceful drain.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_at_once() -> None:
    """Until the event loop takes over, any stop signal ends the process with 0: nothing is in flight."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_now)


def ignore_stop_signals() -> None:
    """After the drain: a signal arriving while the process exits changes nothing (never 143)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
