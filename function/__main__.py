"""``python -m function``: settings from the environment (and flags), then serve until a signal.

Exit codes: 0 after a stop signal (a graceful drain, or a start cut short); 1 when the model
cannot be served; 2 for a bad setting (one line naming the variable and its value), all before any
worker starts.
"""

from __future__ import annotations

from function.stop_signals import STOP_SIGNALS, ignore_stop_signals, remember_stop_signals, stop_requested

if __name__ == "__main__":
    # NOTE: before the imports below (0.1-0.2 s): a stop signal in them is remembered and stops the
    # start, where it would end the process with 143, or, as PID 1, be dropped by the kernel.
    remember_stop_signals()

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import sys
from typing import TYPE_CHECKING

from function.command_line import parse_startup
from function.errors import StartupError
from function.parallel.forkserver import start_forkserver
from function.reaper import orphans_reaped_as_init
from function.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web

    from function.inference.classifier import Classifier
    from function.tracing.config import TracingConfig

log = logging.getLogger("function.serve")
PROG = "python -m function"


def main(classifier: Classifier | None = None) -> int:
    """Serve until a stop signal; the exit code. ``classifier`` replaces the worker pool that serves
    the model (``python -m bench.constant`` serves a constant one), and no forkserver starts."""
    remember_stop_signals()  # again, for a caller of main() (bench.constant)
    if stop_requested() is not None:  # during the imports
        return 0
    settings, tracing = parse_startup(None, os.environ)
    try:
        listener = bind(settings)
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    descriptors = raise_descriptor_limit()
    with orphans_reaped_as_init():
        return start(settings, listener, descriptors, classifier, tracing)


def start(
    settings: Settings,
    listener: socket.socket,
    descriptors: int,
    classifier: Classifier | None,
    tracing: TracingConfig | None = None,
) -> int:
    """The forkserver, the app, then serve: the exit code (1 when the model cannot be served)."""
    if classifier is None:
        start_forkserver()
    # NOTE: imported only now: aiohttp and its friends take 0.4-0.8 s to import, which the
    # forkserver's own preload of onnxruntime (about 0.3 s, on the other core) overlaps.
    from function.app import create_app
    from function.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    try:
        app = create_app(settings, classifier, tracing)
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if (signum := stop_requested()) is not None:
        log.info("%s received while starting: stopped", signal.Signals(signum).name)
        return 0
    return serve(app, settings, listener, descriptors)


def bind(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything starts: a bad HOST or a busy PORT is a setting error."""
    where = f"HOST={settings.host!r} PORT={settings.port}"
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"HOST={settings.host!r} does not resolve: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"PORT={settings.port} is already in use on HOST={settings.host!r}") from None
        raise StartupError(f"cannot listen on {where}: {exc.strerror}") from None
    listener.setblocking(False)
    return listener


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard limit (each connection holds one); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


def serve(app: web.Application, settings: Settings, listener: socket.socket, descriptors: int) -> int:
    """Serve ``app`` on ``listener`` until a stop signal, drain, and return the exit code."""
    import uvloop

    from function.serving import run

    loop = uvloop.new_event_loop() if settings.event_loop == "uvloop" else asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run(app, settings, listener, STOP_SIGNALS, descriptors))
    finally:
        # NOTE: removing the loop's handlers restores the default action, which a signal arriving
        # while the process exits would take (exit 143 after a clean drain): ignore them instead.
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        ignore_stop_signals()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
