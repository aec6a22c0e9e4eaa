"""How inference processes are made: forked by a forkserver that has imported the worker module."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext

# NOTE: forkserver, not fork: forking a process whose onnxruntime threads exist is unsafe.
# The forkserver preloads the worker module (onnxruntime, numpy) once, so each fork starts fast.
START_METHOD = "forkserver"
PRELOAD = ["function.worker"]


def context() -> BaseContext:
    """The multiprocessing context every inference process comes from."""
    ctx = multiprocessing.get_context(START_METHOD)
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_early() -> None:
    """Start the forkserver now, so that its preload (about 0.3 s) runs while the server imports aiohttp."""
    context()
    multiprocessing.forkserver.ensure_running()
