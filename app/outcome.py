"""How a session ends: its `Outcome`, and what the session's tasks report to it.

The first outcome decided wins (`Session.finish`); it gives the reason the session logs
and counts, the close code, and the error the client is told before the close, if any.
The reader (app/reader.py) and the output relay (app/relay.py) report through `Ending`,
which `Session` implements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette import status

from app.errors import ModelError, SessionError
from app.wire.connection import ClientGone


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: str
    close_code: int = status.WS_1000_NORMAL_CLOSURE
    error: SessionError | None = None
    client_gone: bool = False  # the socket is already closed: send nothing more

    @classmethod
    def gone(cls, client: ClientGone) -> Outcome:
        return cls(client.reason, client.code, client_gone=True)

    @classmethod
    def model_failure(cls, exc: BaseException) -> Outcome:
        if isinstance(exc, SessionError):  # ours, raised through strands (the restart budget)
            return cls(exc.code, exc.close_code, exc)
        return cls("model_error", status.WS_1011_INTERNAL_ERROR, ModelError(describe(exc)))


SHUTDOWN = Outcome("server_shutdown", status.WS_1012_SERVICE_RESTART)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Ending(Protocol):
    """What a session's tasks tell the session; each call may end every task."""

    @property
    def draining(self) -> bool:
        """The server is draining: the session ends once its answer is out."""
        ...

    def finish(self, outcome: Outcome) -> None: ...

    def client_gone(self, gone: ClientGone) -> None: ...

    def model_failed(self, exc: BaseException) -> None: ...
