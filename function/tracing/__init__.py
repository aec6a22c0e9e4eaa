"""OpenTelemetry spans without the OpenTelemetry SDK: one tuple per request on the event loop, OTLP/HTTP
protobuf written by hand and posted in batches by a daemon thread.

``config.tracing_config(environ)`` reads the standard ``OTEL_*`` variables and returns None when tracing
is off; only then are ``tracer`` and ``otlp`` imported, so a service without a collector pays nothing.
"""
