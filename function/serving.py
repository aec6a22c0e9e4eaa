"""Run the app on its bound socket until a stop signal, then drain within ``SHUTDOWN_GRACE_SECONDS``."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Sequence

from aiohttp import web

from function.api.access_log import ACCESS_LOGGER, AccessLogger, install_transport_logging
from function.settings import Settings
from function.state import CLASSIFIER, LIFECYCLE, METRICS
from function.stop_signals import stop_requested

log = logging.getLogger("function.serve")

#: Descriptors kept free of connections: the listening socket, the event loop, logs, and each
#: worker's pipes (about 8), with room to replace a worker while every other descriptor is taken.
RESERVED_DESCRIPTORS = 32
RESERVED_PER_WORKER = 16
REFUSAL_LOG_SECONDS = 10.0
#: The drain ends once no request has been handled for this long: a client that had a request
#: on the way over a kept-alive connection when the signal came has had time to send it.
QUIET_SECONDS = 0.5
POLL_SECONDS = 0.05


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class CappedSite(web.SockSite):
    """The listening socket, refusing connections beyond ``limit`` open ones (accepted, then closed at
    once), so that the descriptors a worker restart needs are never taken by clients."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket, limit: int, on_refuse: Callable[[], None]) -> None:
        super().__init__(runner, sock)
        self._limit = limit
        self._on_refuse = on_refuse
        self._refused = 0
        self._logged_at = -REFUSAL_LOG_SECONDS

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            # NOTE: the server's own table of open connections; `connections` would copy it each time.
            if len(server._connections) < self._limit:
                return server()
            self._refused += 1
            self._on_refuse()
            if loop.time() - self._logged_at >= REFUSAL_LOG_SECONDS:
                self._logged_at = loop.time()
                log.warning(
                    "refusing new connections: %d are open, the most the open-file limit leaves room for "
                    "(%d refused so far)",
                    self._limit,
                    self._refused,
                )
            return _Refuse()

        self._server = await loop.create_server(protocol, sock=self._sock, backlog=self._backlog)


def drain_seconds(grace: float) -> float:
    """The part of the grace that requests in flight get to finish: then the workers still busy
    are stopped (killed, if hung), so that the requests they held are answered 503 in the rest."""
    return max(grace - 1.0, grace / 2)


def linger_seconds(grace: float) -> float:
    """After the drain, the time each connection it cut may take to read the rest of its body and
    close (aiohttp waits it out twice: for the handler, then for the connection)."""
    return (grace - drain_seconds(grace)) / 2


def connection_limit(descriptors: int, workers: int) -> int:
    """Connections that may be open at once under an open-file limit of ``descriptors``."""
    return max(1, descriptors - RESERVED_DESCRIPTORS - RESERVED_PER_WORKER * workers)


async def run(
    app: web.Application, settings: Settings, listener: socket.socket, signals: Sequence[int], descriptors: int
) -> int:
    """Start the app (workers warm), serve ``listener`` until one of ``signals``, drain; the exit code.

    The first signal starts the drain; later ones (a second SIGTERM, SIGINT after SIGTERM...) are
    logged and change nothing, so no request in flight loses its answer.
    """
    loop = asyncio.get_running_loop()
    lifecycle = app[LIFECYCLE]
    stopping = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stopping.is_set():
            log.info("%s received while stopping: the drain goes on", name)
            return
        lifecycle.deadline = loop.time() + settings.shutdown_grace_seconds
        log.info("%s received: stopping within %g s", name, settings.shutdown_grace_seconds)
        stopping.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    if (early := stop_requested()) is not None:  # between the start's last look and the loop's handlers
        on_signal(early)
    install_transport_logging()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLogger,
        access_log=logging.getLogger(ACCESS_LOGGER) if settings.access_log else None,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        # What is left after the drain (``drain``), for the connections it cut to linger in.
        shutdown_timeout=linger_seconds(settings.shutdown_grace_seconds),
        handler_cancellation=True,  # a client that leaves takes its queued texts with it
    )
    setup = asyncio.ensure_future(runner.setup())
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not setup.done():  # stopped while the workers were still starting
        setup.cancel()
        await asyncio.gather(setup, return_exceptions=True)
        await runner.cleanup()
        return 0
    if setup.exception() is not None:
        log.error("the service could not start: %s", setup.exception())
        stopped.cancel()
        await runner.cleanup()
        return 1
    limit = connection_limit(descriptors, settings.worker_count)
    await CappedSite(runner, listener, limit, app[METRICS].connections_refused.inc).start()
    await stopped
    await drain(app, runner, settings)
    await runner.cleanup()
    log.info("stopped")
    return 0


async def drain(app: web.Application, runner: web.AppRunner, settings: Settings) -> None:
    """Answer everything accepted before the signal, within ``drain_seconds`` of the grace.

    The listener closes at once (a new connection is refused, so its client knows nothing was
    sent), but open connections are served: a request in flight, one still uploading and one
    that arrives on a kept-alive connection are all answered, each answer closing its connection.
    The drain ends once no request has been handled for ``QUIET_SECONDS``, or at the cut: then
    uploads still incomplete are answered 503 (``Connection: close``, the rest of the body read
    and dropped for what is left of the grace, so that a client still sending can read it) and
    the classifier fails the texts it still holds with 503.
    """
    loop = asyncio.get_running_loop()
    lifecycle, server = app[LIFECYCLE], runner.server
    assert server is not None
    lifecycle.draining = True
    for site in list(runner.sites):
        await site.stop()
    log.info(
        "draining: readiness answers 503, new connections are refused, open ones are served (%d requests in flight)",
        lifecycle.active,
    )
    cut_at = loop.time() + drain_seconds(settings.shutdown_grace_seconds)
    handled, quiet_since = server.requests_count, loop.time()
    while (now := loop.time()) < cut_at:
        if lifecycle.active or server.requests_count != handled:
            handled, quiet_since = server.requests_count, now
        elif now - quiet_since >= QUIET_SECONDS:
            log.info("drained: every request accepted was answered")
            return
        await asyncio.sleep(min(POLL_SECONDS, cut_at - now))
    uploads = lifecycle.cut_uploads()
    log.warning(
        "drain cut after %g s: %d requests still open are answered 503 (%d of them still uploading)",
        drain_seconds(settings.shutdown_grace_seconds),
        lifecycle.active,
        uploads,
    )
    await app[CLASSIFIER].stop(0)
