"""When tracing is set up (app/tracing.py): only when the standard OTEL_* environment asks
for export, and with a clear startup error when it cannot be done. Spans reaching a
collector are tested end to end in tests/integration/test_observability.py."""

from __future__ import annotations

import sys

import pytest
from opentelemetry import trace

from app.__main__ import main
from app.config import Settings
from app.errors import ConfigError
from app.main import create_app
from app.tracing import NO_TRACE, OTLP_MODULE, build_provider, requested_exporters, start_session_trace
from tests.support import TOOLS_DIR

ENDPOINT = "http://collector:4318"


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "voice"}, ()),  # naming the service asks for nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),  # the SDK's default endpoint
        ({"OTEL_TRACES_EXPORTER": "console, OTLP"}, ("console", "otlp")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, ()),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ("otlp",),
        ),
    ],
)
def test_exporters_asked_for_by_the_environment(environ: dict[str, str], exporters: tuple[str, ...]) -> None:
    assert requested_exporters(environ) == exporters


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "'grpc'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'",
        ),
    ],
)
def test_what_cannot_be_done_is_a_config_error(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        requested_exporters(environ)


def test_otlp_without_its_optional_package_stops_startup_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, OTLP_MODULE, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'voice-agent-server\[otel\]'"):
        build_provider(("otlp",))

    # And so `python -m app` refuses to start, before any provider is set up.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("MODEL_PROVIDER", "echo")
    assert main([]) == 2
    assert "voice-agent-server[otel]" in capsys.readouterr().err
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_without_otel_settings_nothing_is_set_up() -> None:
    create_app(Settings(tools_dir=TOOLS_DIR))
    # strands' spans still go to OpenTelemetry's default, the no-op provider,
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    # and a session starts no span of its own.
    assert start_session_trace("s-1") is NO_TRACE
