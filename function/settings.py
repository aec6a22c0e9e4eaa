"""Service settings: one frozen dataclass, built once from the environment and injected.

Every field names its environment variable, a one-line meaning and the values it accepts; a value
outside them is refused at start with one line naming the variable and the value (exit 2).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from function.budgets import Budgets, derive
from function.cgroup import available_cpus, memory_limit
from function.cloudevents.event_types import DEFAULT_SOURCE
from function.model_info import METADATA_FILE, MODEL_FILE
from function.setting_fields import LOG_LEVELS, check, convert, setting

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; each field names its environment variable."""

    host: str = setting("0.0.0.0", "HOST", "interface to listen on")
    port: int = setting(8080, "PORT", "TCP port (Knative injects PORT)", minimum=1, maximum=65535)
    model_dir: Path = setting(PROJECT_ROOT / "model", "MODEL_DIR", "folder holding model.onnx and model.json")
    workers: int = setting(
        0, "WORKERS", "inference processes; 0 = CPUs this process may use (cgroup quota, affinity)", minimum=0
    )
    short_text_workers: int = setting(
        0,
        "SHORT_TEXT_WORKERS",
        "workers that may classify short texts at once; 0 = one fewer than the CPUs (at least 1)",
        minimum=0,
    )
    max_body_bytes: int = setting(
        1024 * 1024, "MAX_BODY_BYTES", "largest request body accepted (413 beyond)", minimum=1
    )
    body_timeout_seconds: float = setting(
        30.0, "BODY_TIMEOUT_SECONDS", "time a client has to send its request body (408 beyond)", above=0
    )
    max_batch_items: int = setting(256, "MAX_BATCH_ITEMS", "largest list accepted by POST /predictions", minimum=1)
    max_pending: int = setting(2048, "MAX_PENDING", "texts queued or in inference before 503 + Retry-After", minimum=1)
    batch_max_size: int = setting(32, "BATCH_MAX_SIZE", "most texts grouped into one onnxruntime call", minimum=1)
    batch_max_chars: int = setting(
        0,
        "BATCH_MAX_CHARS",
        "most characters in one onnxruntime call (a longer text runs alone); 0 = from the memory limit",
        minimum=0,
    )
    body_budget_bytes: int = setting(
        0,
        "BODY_BUDGET_BYTES",
        "request-body bytes held at once (read or waiting) before 503 + Retry-After; 0 = from the memory limit",
        minimum=0,
    )
    retry_after_seconds: int = setting(1, "RETRY_AFTER_SECONDS", "Retry-After sent with 503 answers", minimum=0)
    #: 10x the p99 of the longest call (BATCH_MAX_CHARS characters) with both CPUs busy: bench/DEADLINE.md.
    inference_timeout_seconds: float = setting(
        5.0,
        "INFERENCE_TIMEOUT_SECONDS",
        "longest one onnxruntime call may take before its worker is killed and replaced (503)",
        above=0,
    )
    shutdown_grace_seconds: float = setting(
        20.0, "SHUTDOWN_GRACE_SECONDS", "time in-flight requests get after SIGTERM", minimum=0
    )
    worker_start_timeout_seconds: float = setting(
        60.0, "WORKER_START_TIMEOUT_SECONDS", "time for a worker to load and warm the model", above=0
    )
    keepalive_timeout_seconds: float = setting(
        75.0, "KEEPALIVE_TIMEOUT_SECONDS", "idle keep-alive connection lifetime", above=0
    )
    event_loop: str = setting("uvloop", "EVENT_LOOP", "uvloop or asyncio", choices=("uvloop", "asyncio"))
    log_format: str = setting("json", "LOG_FORMAT", "json (one object a line) or text", choices=("json", "text"))
    log_level: str = setting("INFO", "LOG_LEVEL", "logging level", choices=LOG_LEVELS)
    access_log: bool = setting(True, "ACCESS_LOG", "log one line per request (health probes excluded)")
    revision: str = setting("", "K_REVISION", "the Knative revision serving (Knative sets it; named in every answer)")
    feedback_key: str = setting(
        "",
        "FEEDBACK_KEY",
        "HMAC-SHA-256 key signing prediction ids, at least 32 bytes (a Kubernetes Secret); empty = no ids, no feedback",
        secret_bytes=32,
    )
    feedback_max_age_seconds: float = setting(
        30 * 86400.0, "FEEDBACK_MAX_AGE_SECONDS", "how long a prediction id is accepted as feedback", above=0
    )
    feedback_seen_ids: int = setting(
        100_000,
        "FEEDBACK_SEEN_IDS",
        "prediction ids remembered so that feedback counts once (about 86 bytes each)",
        minimum=1,
    )
    event_source: str = setting(
        DEFAULT_SOURCE,
        "EVENT_SOURCE",
        "source of the reply events (POST /): a URI-reference, printable ASCII without spaces",
        pattern=r"[!-~]+",
    )
    event_replies: int = setting(
        10_000,
        "EVENT_REPLIES",
        "replies to events remembered, so that a redelivered event gets the same reply; 0 = none",
        minimum=0,
    )
    event_replies_bytes: int = setting(
        16 * 1024 * 1024,
        "EVENT_REPLIES_BYTES",
        "bytes the remembered replies may hold (about 1.2 KB a reply without scores or explanations)",
        minimum=0,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check(f, getattr(self, f.name))

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
                values[f.name] = convert(f, raw)
        return cls(**values)
