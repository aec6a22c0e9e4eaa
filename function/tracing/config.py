"""The standard OpenTelemetry variables, read once: a ``TracingConfig``, or None when tracing is off.

Tracing is on when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. A traces-specific variable wins over its
generic twin; an empty value is unset (the spec's rule). A value the spec would warn about and ignore is
refused instead, like every other setting of the service: one line naming the variable (exit 2).
"""

from __future__ import annotations

import re
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from function.setting_fields import SettingError

_OTLP = "OTEL_EXPORTER_OTLP_"
_TRACES = "OTEL_EXPORTER_OTLP_TRACES_"
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
#: Every variable read, for the docs.
VARIABLES = (
    *(prefix + name for name in ("ENDPOINT", "HEADERS", "TIMEOUT", "PROTOCOL", "COMPRESSION", "CERTIFICATE")
      for prefix in (_TRACES, _OTLP)),
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_EXPORT_TIMEOUT",
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNKNOWN_SERVICE = "unknown_service:python"


@dataclass(frozen=True)
class TracingConfig:
    """Where and how spans are exported; built by ``tracing_config``."""

    endpoint: str  # the full URL spans are POSTed to
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold credentials
    timeout_seconds: float | None = 10.0  # per export; None: no limit (a timeout of 0, as the spec says)
    gzip: bool = False
    certificate: str | None = None  # CA file for an https endpoint; None: the system's
    resource: tuple[tuple[str, str], ...] = (("service.name", _UNKNOWN_SERVICE),)
    #: What the variables say of the resource (and the telemetry attributes): over any default (``with_resource``).
    resource_given: tuple[tuple[str, str], ...] = ()
    sampler: str = "parentbased_always_on"
    ratio: float = 1.0  # the share of root traces kept by a traceidratio sampler
    max_queue_size: int = 2048  # requests waiting for export, each its server span and its phases
    schedule_delay_seconds: float = 5.0
    max_export_batch_size: int = 512  # requests per POST

    def with_resource(self, defaults: Mapping[str, str]) -> TracingConfig:
        """This configuration with ``defaults`` (``service.name``, ``service.version``...) in its resource,
        where ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` say nothing else."""
        return replace(self, resource=_merged(defaults, self.resource_given))


def tracing_config(environ: Mapping[str, str]) -> TracingConfig | None:
    """The configuration the environment asks for; None when tracing is off.

    Its resource is what ``OTEL_RESOURCE_ATTRIBUTES`` and then ``OTEL_SERVICE_NAME`` say; the code's own
    attributes go under them (``TracingConfig.with_resource``).
    """
    env = {name: value.strip() for name, value in environ.items() if name.startswith("OTEL_") and value.strip()}
    if _either(env, "ENDPOINT") not in env or _disabled(env):
        return None
    endpoint = _endpoint(env)
    _check_choice(env, _either(env, "PROTOCOL"), ("http/protobuf",))
    compression = _either(env, "COMPRESSION")
    _check_choice(env, compression, ("gzip", "none"))
    timeout = _integer(env, _either(env, "TIMEOUT"), 10_000, minimum=0)
    export_timeout = _integer(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000, minimum=0)
    limits = [t / 1000 for t in (timeout, export_timeout) if t]
    queue = _integer(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, minimum=1)
    batch = _integer(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, minimum=1)
    if batch > queue:
        raise SettingError(f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} must be at most OTEL_BSP_MAX_QUEUE_SIZE ({queue})")
    _check_choice(env, "OTEL_TRACES_SAMPLER", SAMPLERS)
    sampler = env.get("OTEL_TRACES_SAMPLER", SAMPLERS[0])
    given = _resource_given(env)
    return TracingConfig(
        endpoint=endpoint,
        headers=_headers(env),
        timeout_seconds=min(limits) if limits else None,
        gzip=env.get(compression) == "gzip",
        certificate=_certificate(env),
        resource=_merged({}, given),
        resource_given=given,
        sampler=sampler,
        ratio=_ratio(env) if sampler.endswith("traceidratio") else 0.0 if sampler.endswith("always_off") else 1.0,
        max_queue_size=queue,
        schedule_delay_seconds=_integer(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, minimum=1) / 1000,
        max_export_batch_size=batch,
    )


def _either(env: Mapping[str, str], suffix: str) -> str:
    """The name of the traces-specific variable when it is set, else of the generic one."""
    return _TRACES + suffix if _TRACES + suffix in env else _OTLP + suffix


def _endpoint(env: Mapping[str, str]) -> str:
    """The traces URL: the traces-specific one as it is (``/`` for no path), else the generic one with
    ``/v1/traces`` appended to its path."""
    name = _either(env, "ENDPOINT")
    url = env[name]
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises for a port that is not a number in range)
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(f"{name}={url!r} must be an http:// or https:// URL with a host")
    path = (parts.path or "/") if name.startswith(_TRACES) else parts.path.rstrip("/") + "/v1/traces"
    return urllib.parse.urlunsplit(parts._replace(path=path, fragment=""))


def _disabled(env: Mapping[str, str]) -> bool:
    value = env.get("OTEL_SDK_DISABLED", "false").lower()
    if value not in ("true", "false"):
        raise SettingError(f"OTEL_SDK_DISABLED={env['OTEL_SDK_DISABLED']!r} must be true or false")
    exporters = {e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")}
    if not exporters <= {"otlp", "none"}:
        raise SettingError(f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r} must be otlp or none")
    return value == "true" or exporters == {"none"}


def _check_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> None:
    if name in env and env[name] not in choices:
        raise SettingError(f"{name}={env[name]!r} must be one of {', '.join(choices)}")


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise SettingError(f"{name}={raw!r} is not a whole number")
    if int(raw) < minimum:
        raise SettingError(f"{name}={raw!r} must be at least {minimum}")
    return int(raw)


def _ratio(env: Mapping[str, str]) -> float:
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1")
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise SettingError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} must be a number from 0 to 1")
    return ratio


def _pairs(env: Mapping[str, str], name: str) -> list[tuple[str, str]]:
    """``key=value,...`` with percent-encoded values (W3C Baggage); values are never printed."""
    pairs = []
    for number, item in enumerate(filter(None, (i.strip() for i in env.get(name, "").split(","))), 1):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise SettingError(f"{name}: entry {number} is not key=value (entries are separated by commas)")
        pairs.append((key.strip(), urllib.parse.unquote(value.strip())))
    return pairs


def _headers(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    name = _either(env, "HEADERS")
    headers = _pairs(env, name)
    for key, value in headers:
        if not _TOKEN.fullmatch(key) or _CONTROL.search(value):
            raise SettingError(f"{name}: {key!r} is not a header name, or its value holds a control character")
    return tuple(headers)


def _resource_given(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    attributes = dict(_pairs(env, "OTEL_RESOURCE_ATTRIBUTES"))
    if "OTEL_SERVICE_NAME" in env:
        attributes["service.name"] = env["OTEL_SERVICE_NAME"]
    attributes.update({"telemetry.sdk.name": "function.tracing", "telemetry.sdk.language": "python"})
    return tuple(attributes.items())


def _merged(defaults: Mapping[str, str], given: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple({"service.name": _UNKNOWN_SERVICE, **defaults, **dict(given)}.items())


def _certificate(env: Mapping[str, str]) -> str | None:
    name = _either(env, "CERTIFICATE")
    path = env.get(name)
    if path is not None:
        try:
            ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError):
            raise SettingError(f"{name}={path!r} is not a readable file of PEM certificates") from None
    return path
