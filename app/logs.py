"""Logging with the session id on every line a session produces, and without secrets.

The id lives in a context variable set by the session's task; asyncio copies context
into every task created under it (strands' reader and tool tasks too), so a record
made anywhere in a session, by our code or a library's, can be stamped with it.

No audio, user text or secrets: uvicorn's access lines carry the query string (which may
hold a token), so its values are redacted; libraries that log frames, payloads or headers
below WARNING stay at WARNING whatever LOG_LEVEL is, unless named in DEBUG_LOGGERS.

LOG_FORMAT=json writes the same records as one JSON object a line (`JsonFormatter`), for
log pipelines that index fields: what a call passes in `extra={...}` becomes fields.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import uvicorn.config

session_id_var: ContextVar[str] = ContextVar("session_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [session=%(session_id)s] %(message)s"

_installed = False


def install_record_factory() -> None:
    """Idempotent: stamps `record.session_id` on every log record made in the process."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.session_id = session_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


class SessionFormatter(logging.Formatter):
    """Formats `LOG_FORMAT`; records made before the factory was installed get '-'."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **kwargs: Any) -> None:
        super().__init__(fmt or LOG_FORMAT, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "session_id"):
            record.session_id = session_id_var.get()
        return super().format(record)


# Attributes every record has; any other attribute came from a call's `extra={...}`.
# uvicorn passes `color_message` (its message with terminal colours) that way.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "session_id",
    "color_message",
}
# The arguments of uvicorn's access line, `'%s - "%s %s HTTP/%s" %d'`, as fields.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC, ms), level, logger, session_id (in a
    session), message, the call's `extra` fields, and `exc` (the traceback, newlines
    escaped). ASCII only, so a line stays one valid line whatever the stream's encoding."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, **kwargs: Any) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        session_id = getattr(record, "session_id", None) or session_id_var.get()
        if session_id != "-":
            line["session_id"] = session_id
        line["message"] = record.getMessage()
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            line.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


# Loggers that print frames, request bodies, user text or headers below WARNING: httpx
# logs URLs at INFO, strands' Nova Sonic model previews text at DEBUG, httpcore, botocore
# and the AWS SDK log requests and headers at DEBUG.
QUIET_LOGGERS = (
    "websockets",
    "httpx",
    "httpcore",
    "h11",
    "h2",
    "hpack",
    "urllib3",
    "botocore",
    "boto3",
    "s3transfer",
    "awscrt",
    "aws_sdk_bedrock_runtime",
    "aws_sdk_signers",
    "smithy_core",
    "smithy_http",
    "smithy_json",
    "smithy_aws_core",
    "smithy_aws_event_stream",
    "strands",
    "openai",
)
# uvicorn's own loggers: useful at INFO (startup, accepted connections), never below it:
# uvicorn hands uvicorn.error to websockets, which logs every frame and header at DEBUG.
UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access")
# Query values kept in logged URLs: the connect options, harmless and useful when debugging
# a client, and only when short and plain. Every other value (a token, a key) is redacted.
KEPT_QUERY_KEYS = frozenset({"input_sample_rate", "output_sample_rate", "audio"})
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_]{1,16}")
REDACTED = "[redacted]"


def redact_query(target: str) -> str:
    """`/ws?token=abc&audio=binary` -> `/ws?token=[redacted]&audio=binary`."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    return f"{path}?{'&'.join(_redact_pair(pair) for pair in query.split('&'))}"


def _redact_pair(pair: str) -> str:
    key, sep, value = pair.partition("=")
    if not sep:  # a bare value, e.g. `/ws?<token>`
        return REDACTED if pair else pair
    if key in KEPT_QUERY_KEYS and _PLAIN_VALUE.fullmatch(value):
        return pair
    return f"{key}={REDACTED}"


class RedactQuery(logging.Filter):
    """On the handlers: uvicorn passes the path with its query as a format argument of its
    access lines and its WebSocket `[accepted]` lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) and "?" in arg else arg for arg in record.args
            )
        return True


class ClientFaults(logging.Filter):
    """On uvicorn.error: what clients cause, logged as what it is. uvicorn logs a text frame
    that is not valid UTF-8 as an ERROR with a traceback, though it is the client's doing
    and handled (close 1007). Any client can send one, so it must not page an operator: it
    becomes one INFO line. A refused handshake's own line is dropped (see REFUSED)."""

    MESSAGES = frozenset({"Invalid UTF-8 sequence received from client."})
    # websockets' line for every handshake the gate refused: app.edge.refusals already logs
    # each refusal with its reason (a flood as one line a second), and uvicorn's access log
    # has the request and status; a third line per refused client is noise an attacker sets.
    REFUSED = "connection rejected (%d %s)"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.REFUSED:
            return False
        if record.levelno <= logging.INFO or not isinstance(record.msg, str):
            return True
        if record.msg not in self.MESSAGES:
            return True
        record.msg = "closing a WebSocket with 1007: the client sent a text frame that is not UTF-8"
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def uvicorn_log_config(
    level: str = "INFO", debug_loggers: Sequence[str] = (), log_format: str = "text"
) -> dict[str, Any]:
    """uvicorn's logging config with our format and filters; `level` is LOG_LEVEL for our
    own loggers, `debug_loggers` the DEBUG_LOGGERS that may go below their floor,
    `log_format` LOG_FORMAT (json: uvicorn's access lines too)."""

    def asked(name: str) -> bool:
        return any(name == wanted or name.startswith(f"{wanted}.") for wanted in debug_loggers)

    def logger(level: str) -> dict[str, Any]:
        return {"handlers": ["default"], "level": level, "propagate": False}

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["default"] = {"()": "app.logs.SessionFormatter"}
    if log_format == "json":
        for name in ("default", "access"):
            config["formatters"][name] = {"()": "app.logs.JsonFormatter"}
    config["filters"] = {
        "redact_query": {"()": "app.logs.RedactQuery"},
        "client_faults": {"()": "app.logs.ClientFaults"},
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_query"]
    loggers = config["loggers"]
    loggers["app"] = logger(level)
    at_least_info = "INFO" if level == "DEBUG" else level
    for name in UVICORN_LOGGERS:
        loggers[name]["level"] = "DEBUG" if asked(name) else at_least_info
    loggers["uvicorn.error"]["filters"] = ["client_faults"]
    for name in QUIET_LOGGERS:
        loggers[name] = logger("DEBUG" if asked(name) else "WARNING")
    for name in debug_loggers:
        loggers.setdefault(name, logger("DEBUG"))["level"] = "DEBUG"
    # Every other logger's warnings (asyncio's, OpenTelemetry's exporter, a plugin's) in the
    # same format, rather than bare lines from logging's last-resort handler.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
