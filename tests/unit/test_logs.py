from __future__ import annotations

import logging

import pytest

from app.logs import ClientFaults, RedactQuery, redact_query, uvicorn_log_config


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


def test_access_and_accepted_lines_lose_query_values() -> None:
    access = record(
        "uvicorn.access",
        logging.INFO,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/health?api_key=SECRET", "1.1", 200),
    )
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
