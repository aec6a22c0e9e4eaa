"""``python -m function``: settings from the environment (and flags), then serve until SIGTERM."""

from __future__ import annotations

import os
import sys

from function import processes
from function.model_info import ModelError
from function.settings import parse_command_line


def main() -> int:
    settings = parse_command_line(sys.argv[1:], os.environ)
    processes.start_early()
    # NOTE: imported only now: aiohttp and its friends take 0.4-0.8 s to import, which the
    # forkserver's own preload of onnxruntime (about 0.3 s, on the other core) now overlaps.
    from function.app import create_app
    from function.logs import configure_logging
    from function.server import serve

    configure_logging(settings.log_format, settings.log_level)
    try:
        serve(create_app(settings), settings)
    except ModelError as exc:
        print(f"python -m function: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
