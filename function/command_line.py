"""``python -m function --help``: one flag per setting, each also read from its environment variable."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import NamedTuple, NoReturn

from function.setting_fields import SettingError
from function.settings import Settings
from function.tracing.config import TracingConfig, tracing_config


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit 2 (argparse would print its usage first)."""
        self.exit(2, f"{self.prog}: {message}\n")


class Startup(NamedTuple):
    settings: Settings
    tracing: TracingConfig | None  # None: tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT)


def parse_command_line(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """``python -m function [--flag value]``; every flag has an environment variable of the same name.

    A bad value exits 2 with one line naming the variable and the value.
    """
    return parse_startup(argv, environ).settings


def parse_startup(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Startup:
    """The settings, as ``parse_command_line``, and the standard ``OTEL_*`` variables' tracing configuration.

    A bad value of either exits 2 with one line naming the variable.
    """
    secrets = [f for f in dataclasses.fields(Settings) if f.metadata["secret_bytes"] is not None]
    parser = _OneLineParser(
        prog="python -m function",
        description="Serve model/model.onnx over HTTP. Each option is also read from the "
        "environment variable shown in capitals; a flag wins over the variable.",
        epilog="Read from the environment only (a flag's value would show in the process list): "
        + "; ".join(f"{f.metadata['doc']} (env {f.metadata['env']}, no default)" for f in secrets),
    )
    for f in dataclasses.fields(Settings):
        if f.metadata["secret_bytes"] is not None:
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            metavar=f.metadata["env"],
            default=None,
            help=f"{f.metadata['doc']} (env {f.metadata['env']}, default {f.default})",
        )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = Settings.from_env(environ, vars(args))
        return Startup(settings, tracing_config(environ))
    except SettingError as exc:
        parser.error(str(exc))
