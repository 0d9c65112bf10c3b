"""Tracing: strands' OpenTelemetry spans sent to a collector when the standard OTEL_*
environment asks for it, and nothing at all when it does not.

strands' `BidiAgent` emits spans whatever we do, through the global tracer provider: a
`bidi_session` span for the agent's life, `bidi_connect` for each model connection,
`bidi_response` for each model response, `execute_tool <name>` for each tool call and
`bidi_connection_restart` for a restart. Until a provider is set they go to OpenTelemetry's
no-op one. `configure_tracing` sets one up, once a process, when
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_TRACES_EXPORTER` is set; the SDK then reads the rest of the standard variables itself
(headers, timeout, sampler, batch sizes, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
A provider already set up by someone else (`opentelemetry-instrument`, as ADOT does on
AgentCore Runtime) is used as it is.

When tracing is on, each session gets a `voice.session` span, current for the whole session
so that strands' spans are its descendants, with `session.id` in its attributes and in
the OpenTelemetry baggage (which AgentCore's observability reads), and every span started
within a session is stamped with `session.id`. When it is off, `start_session_trace` costs
one check. The app's shutdown sends what is still batched (`flush_tracing`).

These variables are not `Settings`: they are OpenTelemetry's, read by its SDK (this module
only checks whether they ask for export), so the same deployment configuration works for
every OpenTelemetry program.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import anyio
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from app.errors import ConfigError
from app.logs import session_id_var

SESSION_ID = "session.id"  # the attribute and baggage key AgentCore's observability uses
DEFAULT_SERVICE_NAME = "voice-agent-server"
EXPORTERS = ("otlp", "console", "none")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
INSTALL_HINT = "pip install 'voice-agent-server[otel]' (opentelemetry-exporter-otlp-proto-http)"

_provider: TracerProvider | None = None  # set when tracing is on


def requested_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The span exporters the environment asks for; empty: tracing stays off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        exporters = tuple(dict.fromkeys(name.strip() for name in named.split(",") if name.strip()))
        unknown = [name for name in exporters if name not in EXPORTERS]
        if unknown:
            allowed = ", ".join(EXPORTERS)
            raise ConfigError(f"OTEL_TRACES_EXPORTER={named!r} is not supported; allowed values: {allowed}")
        if "none" in exporters:
            return ()
    elif any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES):
        exporters = ("otlp",)
    else:
        return ()
    if "otlp" in exporters:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(name, "").strip()
            if protocol:
                if protocol != "http/protobuf":
                    raise ConfigError(f"{name}={protocol!r} is not supported here; use http/protobuf")
                break
    return exporters


def build_provider(exporters: tuple[str, ...]) -> TracerProvider:
    """A tracer provider batching spans to `exporters`; fails with `ConfigError` if OTLP
    is asked for and its exporter package is not installed (an optional extra)."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(
            f"the OTEL_* environment asks for OTLP traces, but the exporter is not installed: {INSTALL_HINT}"
        ) from None
    return OTLPSpanExporter()


def configure_tracing(environ: Mapping[str, str] = os.environ) -> bool:
    """Idempotent; whether tracing is on. Sets the global tracer provider only when the
    environment asks for export and no provider was set before."""
    global _provider
    if _provider is not None:
        return True
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # set up before us (opentelemetry-instrument)
        provider = current
    else:
        exporters = requested_exporters(environ)
        if not exporters:
            return False
        provider = build_provider(exporters)
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SessionIdStamp())
    _provider = provider
    return True


async def flush_tracing() -> None:
    """Export the spans still batched; at the app's shutdown. uvicorn ends the process by
    raising again the signal that stopped it, so the SDK's own flush at exit never runs.
    Bounded by the exporter's timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default)."""
    if _provider is not None:
        await anyio.to_thread.run_sync(_provider.force_flush)


class SessionIdStamp(SpanProcessor):
    """`session.id` on every span started within a session: strands' spans included,
    since every task a session starts inherits its context (app/logs.py)."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        session_id = session_id_var.get()
        if session_id != "-":
            span.set_attribute(SESSION_ID, session_id)


class SessionTrace:
    """A session's `voice.session` span, current from `start_session_trace` to `end`."""

    def __init__(self, session_id: str) -> None:
        self._token = otel_context.attach(baggage.set_baggage(SESSION_ID, session_id))
        tracer = trace.get_tracer(__name__)
        self._span = tracer.start_span("voice.session", attributes={SESSION_ID: session_id})
        self._span_token = otel_context.attach(trace.set_span_in_context(self._span))

    def end(self, reason: str, code: int | None) -> None:
        """In the task that started it (contexts are per task)."""
        attributes: dict[str, Any] = {"voice.close.reason": reason}
        if code is not None:
            attributes["voice.close.code"] = code
        self._span.set_attributes(attributes)
        self._span.end()
        otel_context.detach(self._span_token)
        otel_context.detach(self._token)


class _NoTrace:
    def end(self, reason: str, code: int | None) -> None:
        pass


NO_TRACE = _NoTrace()


def start_session_trace(session_id: str) -> SessionTrace | _NoTrace:
    return SessionTrace(session_id) if _provider is not None else NO_TRACE
