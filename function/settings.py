"""Service settings: one frozen dataclass, built once from the environment and injected.

Every field names its environment variable, a one-line meaning and the values it accepts; a value
outside them is refused at start with one line naming the variable and the value (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from function.budgets import Budgets, derive
from function.cgroup import available_cpus, memory_limit
from function.model_info import METADATA_FILE, MODEL_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingError(ValueError):
    """A setting's value is not one it accepts; the message names the variable and the value."""


def _setting(
    default: Any,
    env: str,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: Sequence[str] | None = None,
    secret_bytes: int | None = None,
) -> Any:
    """A field read from ``env``; ``secret_bytes``: a secret of at least that many bytes, read from
    the environment only (never a flag, whose value every process may read) and never printed."""
    rule = {"minimum": minimum, "maximum": maximum, "above": above, "choices": choices, "secret_bytes": secret_bytes}
    return field(default=default, metadata={"env": env, "doc": doc, **rule}, repr=secret_bytes is None)


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; each field names its environment variable."""

    host: str = _setting("0.0.0.0", "HOST", "interface to listen on")
    port: int = _setting(8080, "PORT", "TCP port (Knative injects PORT)", minimum=1, maximum=65535)
    model_dir: Path = _setting(PROJECT_ROOT / "model", "MODEL_DIR", "folder holding model.onnx and model.json")
    workers: int = _setting(
        0, "WORKERS", "inference processes; 0 = CPUs this process may use (cgroup quota, affinity)", minimum=0
    )
    short_text_workers: int = _setting(
        0,
        "SHORT_TEXT_WORKERS",
        "workers that may classify short texts at once; 0 = one fewer than the CPUs (at least 1)",
        minimum=0,
    )
    max_body_bytes: int = _setting(
        1024 * 1024, "MAX_BODY_BYTES", "largest request body accepted (413 beyond)", minimum=1
    )
    body_timeout_seconds: float = _setting(
        30.0, "BODY_TIMEOUT_SECONDS", "time a client has to send its request body (408 beyond)", above=0
    )
    max_batch_items: int = _setting(256, "MAX_BATCH_ITEMS", "largest list accepted by POST /predictions", minimum=1)
    max_pending: int = _setting(2048, "MAX_PENDING", "texts queued or in inference before 503 + Retry-After", minimum=1)
    batch_max_size: int = _setting(32, "BATCH_MAX_SIZE", "most texts grouped into one onnxruntime call", minimum=1)
    batch_max_chars: int = _setting(
        0,
        "BATCH_MAX_CHARS",
        "most characters in one onnxruntime call (a longer text runs alone); 0 = from the memory limit",
        minimum=0,
    )
    body_budget_bytes: int = _setting(
        0,
        "BODY_BUDGET_BYTES",
        "request-body bytes held at once (read or waiting) before 503 + Retry-After; 0 = from the memory limit",
        minimum=0,
    )
    retry_after_seconds: int = _setting(1, "RETRY_AFTER_SECONDS", "Retry-After sent with 503 answers", minimum=0)
    #: 10x the p99 of the longest call (BATCH_MAX_CHARS characters) with both CPUs busy: bench/DEADLINE.md.
    inference_timeout_seconds: float = _setting(
        5.0,
        "INFERENCE_TIMEOUT_SECONDS",
        "longest one onnxruntime call may take before its worker is killed and replaced (503)",
        above=0,
    )
    shutdown_grace_seconds: float = _setting(
        20.0, "SHUTDOWN_GRACE_SECONDS", "time in-flight requests get after SIGTERM", minimum=0
    )
    worker_start_timeout_seconds: float = _setting(
        60.0, "WORKER_START_TIMEOUT_SECONDS", "time for a worker to load and warm the model", above=0
    )
    keepalive_timeout_seconds: float = _setting(
        75.0, "KEEPALIVE_TIMEOUT_SECONDS", "idle keep-alive connection lifetime", above=0
    )
    event_loop: str = _setting("uvloop", "EVENT_LOOP", "uvloop or asyncio", choices=("uvloop", "asyncio"))
    log_format: str = _setting("json", "LOG_FORMAT", "json (one object a line) or text", choices=("json", "text"))
    log_level: str = _setting("INFO", "LOG_LEVEL", "logging level", choices=LOG_LEVELS)
    access_log: bool = _setting(True, "ACCESS_LOG", "log one line per request (health probes excluded)")
    revision: str = _setting("", "K_REVISION", "the Knative revision serving (Knative sets it; named in every answer)")
    feedback_key: str = _setting(
        "",
        "FEEDBACK_KEY",
        "HMAC-SHA-256 key signing prediction ids, at least 32 bytes (a Kubernetes Secret); empty = no ids, no feedback",
        secret_bytes=32,
    )
    feedback_max_age_seconds: float = _setting(
        30 * 86400.0, "FEEDBACK_MAX_AGE_SECONDS", "how long a prediction id is accepted as feedback", above=0
    )
    feedback_seen_ids: int = _setting(
        100_000,
        "FEEDBACK_SEEN_IDS",
        "prediction ids remembered so that feedback counts once (about 86 bytes each)",
        minimum=1,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))

    @functools.cached_property
    def cpus(self) -> int:
        """The CPUs this process may really use: cgroup quota and affinity, read once."""
        return available_cpus()

    @functools.cached_property
    def worker_count(self) -> int:
        """Configured workers, or one per CPU (read once: the pool, the budgets and the connection
        limit all count the same workers)."""
        return self.workers or self.cpus

    @property
    def short_text_worker_count(self) -> int:
        """Configured, or all but one CPU's worth, so that the event loop keeps a CPU (bench/README.md,
        decisions); the other workers take long texts and stand by. Never more than the workers."""
        return min(self.worker_count, self.short_text_workers or max(1, self.cpus - 1))

    def budgets(self) -> Budgets:
        """The memory budgets: derived from the cgroup memory limit, unless set here."""
        derived = derive(memory_limit(), self.worker_count, self.max_body_bytes)
        return Budgets(
            body_bytes=self.body_budget_bytes or derived.body_bytes,
            batch_chars=self.batch_max_chars or derived.batch_chars,
        )

    @property
    def model_path(self) -> Path:
        return self.model_dir / MODEL_FILE

    @property
    def metadata_path(self) -> Path:
        return self.model_dir / METADATA_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Settings:
        """Read each field from its environment variable; ``overrides`` (CLI flags) win."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = (overrides or {}).get(f.name)
            if raw is None:
                raw = environ.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = _convert(f, raw)
        return cls(**values)


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn an environment string into the field's type (the type of its default)."""
    default: Any = f.default
    kind = type(default).__name__
    try:
        if isinstance(default, bool):
            return _BOOLEANS[raw.strip().lower()]
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, str):
            return raw.upper() if f.metadata["choices"] is LOG_LEVELS else raw
        return type(default)(raw)
    except (KeyError, ValueError):
        expected = "true or false" if kind == "bool" else "a whole number" if kind == "int" else f"a {kind}"
        raise SettingError(f"{f.metadata['env']}={raw!r} is not {expected}") from None


def _check(f: dataclasses.Field[Any], value: Any) -> None:
    """Refuse ``value`` unless it is within the field's rule (and finite, for a number)."""
    meta = f.metadata
    if meta["secret_bytes"] is not None:
        if value and len(value.encode()) < meta["secret_bytes"]:
            raise SettingError(
                f"{meta['env']} is {len(value.encode())} bytes; it must be at least {meta['secret_bytes']} "
                "(make one with: openssl rand -base64 48)"
            )
        return
    where = f"{meta['env']}={value!r}" if not isinstance(value, Path) else f"{meta['env']}={str(value)!r}"
    if meta["choices"] is not None and value not in meta["choices"]:
        raise SettingError(f"{where} must be one of {', '.join(meta['choices'])}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise SettingError(f"{where} must be a finite number")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise SettingError(f"{where} must be at least {meta['minimum']:g}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise SettingError(f"{where} must be at most {meta['maximum']:g}")
    if meta["above"] is not None and value <= meta["above"]:
        raise SettingError(f"{where} must be more than {meta['above']:g}")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and exit 2 (argparse would print its usage first)."""
        self.exit(2, f"{self.prog}: {message}\n")


def parse_command_line(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """``python -m function [--flag value]``; every flag has an environment variable of the same name.

    A bad value exits 2 with one line naming the variable and the value.
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
        return Settings.from_env(environ, vars(args))
    except SettingError as exc:
        parser.error(str(exc))
