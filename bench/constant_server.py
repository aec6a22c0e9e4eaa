"""``python -m bench.constant_server``: the service with a ``ConstantClassifier`` instead of the model.

Same settings (environment and flags), socket, logging, app factory and ``serve`` as ``python -m function``;
only the classifier differs, injected through ``create_app``.
"""

from __future__ import annotations

import os
import sys

from bench.constant import ConstantClassifier
from function.__main__ import bind, raise_descriptor_limit, serve
from function.app import create_app
from function.logs import configure_logging
from function.model_info import load_model_info
from function.settings import parse_command_line


def main() -> int:
    settings = parse_command_line(sys.argv[1:], os.environ)
    listener = bind(settings)
    configure_logging(settings.log_format, settings.log_level)
    labels = load_model_info(settings.metadata_path)["labels"]
    app = create_app(settings, classifier=ConstantClassifier(labels))
    return serve(app, settings, listener, raise_descriptor_limit())


if __name__ == "__main__":
    sys.exit(main())
