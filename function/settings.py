"""Service settings: one frozen dataclass, built once from the environment and injected."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from function.cpus import available_cpus

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _setting(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; each field names its environment variable."""

    host: str = _setting("0.0.0.0", "HOST", "interface to listen on")
    port: int = _setting(8080, "PORT", "TCP port (Knative injects PORT)")
    model_dir: Path = _setting(PROJECT_ROOT / "model", "MODEL_DIR", "folder holding model.onnx and model.json")
    workers: int = _setting(0, "WORKERS", "inference processes; 0 = CPUs this process may use (cgroup quota, affinity)")
    max_body_bytes: int = _setting(1024 * 1024, "MAX_BODY_BYTES", "largest request body accepted (413 beyond)")
    body_timeout_seconds: float = _setting(
        30.0, "BODY_TIMEOUT_SECONDS", "time a client has to send its request body (408 beyond)"
    )
    max_batch_items: int = _setting(256, "MAX_BATCH_ITEMS", "largest list accepted by POST /predictions")
    max_pending: int = _setting(2048, "MAX_PENDING", "texts queued or in inference before 503 + Retry-After")
    batch_max_size: int = _setting(32, "BATCH_MAX_SIZE", "most texts grouped into one onnxruntime call")
    retry_after_seconds: int = _setting(1, "RETRY_AFTER_SECONDS", "Retry-After sent with 503 answers")
    shutdown_grace_seconds: float = _setting(
        20.0, "SHUTDOWN_GRACE_SECONDS", "time in-flight requests get after SIGTERM"
    )
    worker_start_timeout_seconds: float = _setting(
        60.0, "WORKER_START_TIMEOUT_SECONDS", "time for the pool to load and warm up"
    )
    keepalive_timeout_seconds: float = _setting(
        75.0, "KEEPALIVE_TIMEOUT_SECONDS", "idle keep-alive connection lifetime"
    )
    event_loop: str = _setting("uvloop", "EVENT_LOOP", "uvloop or asyncio")
    log_format: str = _setting("json", "LOG_FORMAT", "json (one object a line) or text")
    log_level: str = _setting("INFO", "LOG_LEVEL", "logging level")
    access_log: bool = _setting(True, "ACCESS_LOG", "log one line per request (health probes excluded)")

    def __post_init__(self) -> None:
        if self.event_loop not in ("uvloop", "asyncio"):
            raise ValueError(f"EVENT_LOOP must be 'uvloop' or 'asyncio', not {self.event_loop!r}")
        if self.log_format not in ("json", "text"):
            raise ValueError(f"LOG_FORMAT must be 'json' or 'text', not {self.log_format!r}")
        for name in ("max_body_bytes", "max_batch_items", "max_pending", "batch_max_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_env(name)} must be at least 1")
        if self.workers < 0:
            raise ValueError("WORKERS must be 0 (automatic) or more")

    @property
    def worker_count(self) -> int:
        """Configured workers, or the CPUs this process may really use."""
        return self.workers or available_cpus()

    @property
    def model_path(self) -> Path:
        return self.model_dir / "model.onnx"

    @property
    def metadata_path(self) -> Path:
        return self.model_dir / "model.json"

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


def _env(name: str) -> str:
    return str(next(f.metadata["env"] for f in dataclasses.fields(Settings) if f.name == name))


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn an environment string into the field's type (the type of its default)."""
    default: Any = f.default
    try:
        if isinstance(default, bool):
            return _BOOLEANS[raw.lower()]
        if isinstance(default, Path):
            return Path(raw)
        return type(default)(raw)
    except (KeyError, ValueError):
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {type(default).__name__}") from None


def parse_command_line(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """``python -m function [--flag value]``; every flag has an environment variable of the same name."""
    parser = argparse.ArgumentParser(
        prog="python -m function",
        description="Serve model/model.onnx over HTTP. Each option is also read from the "
        "environment variable shown in capitals; a flag wins over the variable.",
    )
    for f in dataclasses.fields(Settings):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            metavar=f.metadata["env"],
            default=None,
            help=f"{f.metadata['doc']} (env {f.metadata['env']}, default {f.default})",
        )
    args = parser.parse_args(argv)
    try:
        return Settings.from_env(environ, vars(args))
    except ValueError as exc:
        parser.error(str(exc))
