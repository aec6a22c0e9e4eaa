"""``python -m function``: settings from the environment (and flags), then serve until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import uvloop
from aiohttp import web

from function.app import create_app
from function.logs import AccessLogger, configure_logging
from function.model_info import ModelError
from function.settings import parse_command_line


def main() -> int:
    settings = parse_command_line(sys.argv[1:], os.environ)
    configure_logging(settings.log_format, settings.log_level)
    try:
        app = create_app(settings)
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
    except ModelError as exc:
        print(f"python -m function: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
