"""Logging with the session id on every line a session produces.

The id lives in a context variable set by the session's task; asyncio copies context
into every task created under it (strands' reader and tool tasks too), so a record
made anywhere in a session, by our code or a library's, can be stamped with it.
"""

from __future__ import annotations

import copy
import logging
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


def uvicorn_log_config() -> dict[str, Any]:
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["default"] = {"()": "app.logs.SessionFormatter"}
    config["loggers"]["app"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["strands"] = {"handlers": ["default"], "level": "WARNING", "propagate": False}
    # httpx logs full request URLs at INFO, and a URL may carry an API key.
    config["loggers"]["httpx"] = {"handlers": ["default"], "level": "WARNING", "propagate": False}
    return config
