"""Where every inference process comes from: a forkserver that has preloaded onnxruntime.

NOTE: forkserver, not fork: forking a process whose onnxruntime threads exist is unsafe. The
forkserver imports the worker's modules (onnxruntime, numpy) once, so each fork starts fast.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext

START_METHOD = "forkserver"
PRELOAD = ["function.inference.session", "function.parallel.worker"]


def context() -> BaseContext:
    """The multiprocessing context every inference process comes from."""
    ctx = multiprocessing.get_context(START_METHOD)
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_forkserver() -> None:
    """Start the forkserver now, so that its preload (about 0.3 s) runs while the server imports aiohttp."""
    context()
    multiprocessing.forkserver.ensure_running()
