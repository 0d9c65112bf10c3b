from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from app.logs import (
    ClientFaults,
    JsonFormatter,
    RedactQuery,
    install_record_factory,
    redact_query,
    session_id_var,
    uvicorn_log_config,
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/ws", "/ws"),
        ("/ws?token=SECRET1&api_key=SECRET2", "/ws?token=[redacted]&api_key=[redacted]"),
        (
            "/ws?input_sample_rate=48000&output_sample_rate=24000&audio=binary&token=x",
            "/ws?input_sample_rate=48000&output_sample_rate=24000&audio=binary&token=[redacted]",
        ),
        ("/ws?SECRET", "/ws?[redacted]"),  # a bare value is a value
        ("/ws?audio=" + "A" * 40, "/ws?audio=[redacted]"),  # kept keys keep only short, plain values
        ("/ws?audio=a%20b", "/ws?audio=[redacted]"),
        ("/ws?token=", "/ws?token=[redacted]"),
    ],
)
def test_query_values_are_redacted(target: str, expected: str) -> None:
    assert redact_query(target) == expected


def record(
    name: str, level: int, msg: str, args: tuple[object, ...] = (), exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            b"\xff".decode()
        except UnicodeDecodeError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def access_record(path: str) -> logging.LogRecord:
    """uvicorn's access line for a GET of `path`, as uvicorn makes it."""
    return record(
        "uvicorn.access", logging.INFO, '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", path, "1.1", 200)
    )


def test_access_and_accepted_lines_lose_query_values() -> None:
    access = access_record("/health?api_key=SECRET")
    accepted = record(
        "uvicorn.error",
        logging.INFO,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws?token=SECRET&audio=binary"),
    )
    ours = record("app.session", logging.INFO, "asked %s", ("what?x=1",))
    for item in (access, accepted, ours):
        assert RedactQuery().filter(item)
    assert access.getMessage() == '127.0.0.1:5 - "GET /health?api_key=[redacted] HTTP/1.1" 200'
    assert accepted.getMessage() == '127.0.0.1:5 - "WebSocket /ws?token=[redacted]&audio=binary" [accepted]'
    assert ours.getMessage() == "asked what?x=1"  # only uvicorn's lines carry URLs


def test_invalid_utf8_from_a_client_is_one_info_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = "Invalid UTF-8 sequence received from client."
    caplog.set_level(logging.WARNING, logger="uvicorn.error")
    assert not ClientFaults().filter(record("uvicorn.error", logging.ERROR, message, exc=True))
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    item = record("uvicorn.error", logging.ERROR, message, exc=True)
    assert ClientFaults().filter(item)
    assert (item.levelno, item.levelname, item.exc_info) == (logging.INFO, "INFO", None)
    assert "1007" in item.getMessage()
    other = record("uvicorn.error", logging.ERROR, "Exception in ASGI application\n", exc=True)
    assert ClientFaults().filter(other)
    assert other.levelno == logging.ERROR  # a server fault still pages
    assert other.exc_info is not None


def test_debug_keeps_frame_and_header_loggers_quiet_unless_asked() -> None:
    levels = {name: cfg["level"] for name, cfg in uvicorn_log_config("DEBUG")["loggers"].items()}
    assert levels["app"] == "DEBUG"
    assert levels["uvicorn.error"] == levels["uvicorn.access"] == "INFO"
    for name in ("websockets", "httpx", "httpcore", "botocore", "strands", "openai", "smithy_core"):
        assert levels[name] == "WARNING", name
    asked = uvicorn_log_config("INFO", ("websockets", "uvicorn", "strands.bidi"))["loggers"]
    assert asked["websockets"]["level"] == asked["uvicorn.error"]["level"] == "DEBUG"
    assert asked["strands.bidi"]["level"] == "DEBUG"
    assert asked["strands"]["level"] == "WARNING"
    assert uvicorn_log_config("WARNING")["loggers"]["uvicorn.error"]["level"] == "WARNING"


def test_json_lines_carry_the_session_fields_and_a_one_line_traceback() -> None:
    install_record_factory()
    token = session_id_var.set("s-42")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            item = logging.getLogger("app.session").makeRecord(
                "app.session",
                logging.ERROR,
                __file__,
                1,
                "session closed: reason=%s",
                ("model_error",),
                sys.exc_info(),
                extra={"reason": "model_error", "code": 1011, "duration_s": 1.5},
            )
    finally:
        session_id_var.reset(token)
    line = JsonFormatter().format(item)
    assert "\n" not in line
    parsed = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed.pop("time"))
    exc = parsed.pop("exc")
    assert exc.startswith("Traceback")
    assert exc.endswith("ValueError: boom")
    assert parsed == {
        "level": "ERROR",
        "logger": "app.session",
        "session_id": "s-42",
        "message": "session closed: reason=model_error",
        "reason": "model_error",
        "code": 1011,
        "duration_s": 1.5,
    }


def test_json_access_lines_are_fields_with_the_query_redacted() -> None:
    access = access_record("/health?api_key=SECRET")
    assert RedactQuery().filter(access)
    parsed = json.loads(JsonFormatter().format(access))
    assert "session_id" not in parsed  # outside a session
    assert {k: parsed[k] for k in ("client", "method", "path", "http_version", "status")} == {
        "client": "127.0.0.1:5",
        "method": "GET",
        "path": "/health?api_key=[redacted]",
        "http_version": "1.1",
        "status": 200,
    }


def test_log_format_picks_the_formatter_of_every_handler() -> None:
    text = uvicorn_log_config("INFO")
    assert text["formatters"]["default"] == {"()": "app.logs.SessionFormatter"}
    json_config = uvicorn_log_config("INFO", (), "json")
    for name in ("default", "access"):
        assert json_config["formatters"][name] == {"()": "app.logs.JsonFormatter"}
    # Loggers not named in the config (asyncio, OpenTelemetry's exporter, a plugin's) too.
    assert json_config["root"] == {"handlers": ["default"], "level": "WARNING"}


def test_websockets_line_for_a_refused_handshake_is_dropped() -> None:
    # The edge logs each refusal (throttled) and the access log has the status.
    refused = record("uvicorn.error", logging.INFO, "connection rejected (%d %s)", (503, "Unavailable"))
    opened = record("uvicorn.error", logging.INFO, "connection open", ())
    assert not ClientFaults().filter(refused)
    assert ClientFaults().filter(opened)
