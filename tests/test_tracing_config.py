"""The standard OpenTelemetry variables as ``function.tracing.config`` reads them: off unless an endpoint is
set, the spec's endpoint rules, precedence, units, and one line naming the variable for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from function.setting_fields import SettingError
from function.tracing.config import VARIABLES, TracingConfig, tracing_config

BASE = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


def config(**env: str) -> TracingConfig:
    read = tracing_config({**BASE, **env})
    assert read is not None
    return read


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ""},  # empty is unset (the spec's rule)
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
        {**BASE, "OTEL_SDK_DISABLED": "true"},
        {**BASE, "OTEL_SDK_DISABLED": "TRUE"},
        {**BASE, "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SERVICE_NAME": "svc", "OTEL_BSP_MAX_QUEUE_SIZE": "not read when off", "PATH": "/bin"},
    ],
)
def test_tracing_is_off_without_an_endpoint_or_when_disabled(env: dict[str, str]) -> None:
    assert tracing_config(env) is None


def test_defaults_are_the_specs() -> None:
    assert config() == TracingConfig(
        endpoint="http://collector:4318/v1/traces",
        timeout_seconds=10.0,
        resource=(
            ("service.name", "unknown_service:python"),
            ("telemetry.sdk.name", "function.tracing"),
            ("telemetry.sdk.language", "python"),
        ),
        resource_given=(("telemetry.sdk.name", "function.tracing"), ("telemetry.sdk.language", "python")),
        max_queue_size=2048,
        schedule_delay_seconds=5.0,
        max_export_batch_size=512,
    )
    assert config(OTEL_SDK_DISABLED="false", OTEL_TRACES_EXPORTER="otlp") == config()


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/base"}, "https://c/base/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/base/"}, "https://c/base/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}, "http://c:4318/"),  # as is: no /v1/traces
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom/spans"}, "http://c:4318/custom/spans"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces?tenant=a"}, "http://c/v1/traces?tenant=a"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"},
            "http://t/x",
        ),
    ],
)
def test_the_endpoint_follows_the_specs_path_rules(env: dict[str, str], url: str) -> None:
    read = tracing_config(env)
    assert read is not None
    assert read.endpoint == url


def resource(env: dict[str, str]) -> dict[str, str]:
    read = tracing_config({**BASE, **env})
    assert read is not None
    return dict(read.with_resource({"service.name": "newsgroups-classifier", "service.version": "2.0.0"}).resource)


def test_the_service_name_comes_from_the_code_then_the_resource_attributes_then_otel_service_name() -> None:
    assert resource({})["service.name"] == "newsgroups-classifier"
    attrs = "service.name=from-attrs, deployment.environment.name=prod,team=a%2Cb%3Dc"
    assert resource({"OTEL_RESOURCE_ATTRIBUTES": attrs}) == {
        "service.name": "from-attrs",
        "service.version": "2.0.0",
        "deployment.environment.name": "prod",
        "team": "a,b=c",  # percent-decoded
        "telemetry.sdk.name": "function.tracing",
        "telemetry.sdk.language": "python",
    }
    assert resource({"OTEL_RESOURCE_ATTRIBUTES": attrs, "OTEL_SERVICE_NAME": "svc"})["service.name"] == "svc"
    assert resource({"OTEL_RESOURCE_ATTRIBUTES": "service.version=9,a=b"})["service.version"] == "9"


def test_headers_are_percent_decoded_and_the_traces_ones_win() -> None:
    assert config(OTEL_EXPORTER_OTLP_HEADERS="api-key=s%20ecret , x-a=1,").headers == (
        ("api-key", "s ecret"),
        ("x-a", "1"),
    )
    both = config(OTEL_EXPORTER_OTLP_HEADERS="a=1", OTEL_EXPORTER_OTLP_TRACES_HEADERS="b=2")
    assert both.headers == (("b", "2"),)
    assert "ecret" not in repr(config(OTEL_EXPORTER_OTLP_HEADERS="api-key=secret"))


def test_timeouts_are_milliseconds_and_zero_means_no_limit() -> None:
    assert config(OTEL_EXPORTER_OTLP_TIMEOUT="2500").timeout_seconds == 2.5
    assert config(OTEL_EXPORTER_OTLP_TIMEOUT="2500", OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="700").timeout_seconds == 0.7
    assert config(OTEL_EXPORTER_OTLP_TIMEOUT="60000").timeout_seconds == 30.0  # OTEL_BSP_EXPORT_TIMEOUT's default
    assert config(OTEL_EXPORTER_OTLP_TIMEOUT="0").timeout_seconds == 30.0
    assert config(OTEL_EXPORTER_OTLP_TIMEOUT="0", OTEL_BSP_EXPORT_TIMEOUT="0").timeout_seconds is None


def test_the_batch_processor_variables() -> None:
    read = config(OTEL_BSP_MAX_QUEUE_SIZE="100", OTEL_BSP_SCHEDULE_DELAY="250", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100")
    assert (read.max_queue_size, read.schedule_delay_seconds, read.max_export_batch_size) == (100, 0.25, 100)


@pytest.mark.parametrize(
    ("sampler", "arg", "ratio"),
    [
        ("parentbased_always_on", None, 1.0),
        ("parentbased_always_off", None, 0.0),
        ("always_off", "0.5", 0.0),  # the argument is only for the ratio samplers
        ("traceidratio", "0.25", 0.25),
        ("parentbased_traceidratio", None, 1.0),
        ("parentbased_traceidratio", "0", 0.0),
    ],
)
def test_samplers(sampler: str, arg: str | None, ratio: float) -> None:
    env = {"OTEL_TRACES_SAMPLER": sampler} | ({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {})
    read = config(**env)
    assert (read.sampler, read.ratio) == (sampler, ratio)


def test_gzip_and_protocol() -> None:
    assert config(OTEL_EXPORTER_OTLP_COMPRESSION="gzip").gzip
    assert not config(OTEL_EXPORTER_OTLP_COMPRESSION="gzip", OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="none").gzip
    assert config(OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf") == config()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' must be"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://c"}, "OTEL_EXPORTER_OTLP_ENDPOINT='ftp://c' must be"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:99999"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT="),
        ({"OTEL_SDK_DISABLED": "1"}, "OTEL_SDK_DISABLED='1' must be true or false"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' must be otlp or none"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL='grpc' must be one of http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION='zstd' must be one of gzip, none"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT='10s' is not a whole number"),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT='-1' is not a whole number"),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "1.5"}, "OTEL_BSP_EXPORT_TIMEOUT='1.5' is not a whole number"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE='0' must be at least 1"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "²"}, "OTEL_BSP_MAX_QUEUE_SIZE='²' is not a whole number"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "0"}, "OTEL_BSP_SCHEDULE_DELAY='0' must be at least 1"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "x"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE='x' is not a whole number"),
        (
            {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=4096 must be at most OTEL_BSP_MAX_QUEUE_SIZE (2048)",
        ),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER='jaeger_remote' must be one of"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG='2' must be a number from 0 to 1",
        ),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES: entry 1 is not key=value"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "a=1,Bearer secret"}, "OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not key=value"),
        ({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "bad key=1"}, "OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'bad key' is not"),
        (
            {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent.pem"},
            "OTEL_EXPORTER_OTLP_CERTIFICATE='/nonexistent.pem' is",
        ),
    ],
)
def test_a_bad_value_is_refused_in_one_line_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingError) as refused:
        tracing_config({**BASE, **env})
    message = str(refused.value)
    assert message.startswith(named)
    assert "\n" not in message
    assert "secret" not in message  # a header's value is never printed


def test_a_certificate_file_that_holds_no_certificate_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(SettingError, match=r"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=.* PEM"):
        config(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=str(bogus))


@pytest.mark.parametrize("name", VARIABLES)
def test_every_variable_listed_is_read(name: str) -> None:
    """Each listed variable set to "!" is refused or changes the configuration."""
    env = {**BASE, "OTEL_TRACES_SAMPLER": "traceidratio"}
    try:
        changed = tracing_config({**env, name: "!"}) != tracing_config(env)
    except SettingError as exc:
        changed = str(exc).startswith(name)
    assert changed


def test_a_disabled_configuration_is_not_checked() -> None:
    assert tracing_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "nonsense", "OTEL_SDK_DISABLED": "true"}) is None
