"""Run an app built by ``create_app`` until SIGTERM, the way production does."""

from __future__ import annotations

import asyncio
import logging

import uvloop
from aiohttp import web

from function.logs import AccessLogger
from function.settings import Settings


def serve(app: web.Application, settings: Settings) -> None:
    """Listen on ``settings.host:port``; on SIGTERM drain for ``shutdown_grace_seconds`` and return."""
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_grace_seconds,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("function.access") if settings.access_log else None,
        loop=uvloop.new_event_loop() if settings.event_loop == "uvloop" else asyncio.new_event_loop(),
    )
