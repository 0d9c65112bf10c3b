"""Graceful drain: how the process stops without cutting an answer in progress.

    serving ──begin()──> draining ──(no session left, DRAIN_TIMEOUT, or close_now())──> closing

`begin()` (the first SIGTERM or SIGINT, app/server.py): new handshakes are refused (503
`draining`), `/ready` answers 503, `/ping` busy; every session ends as soon as it owes
its client nothing (`Turn`), at once if it is idle between turns. `close_now()` (the
deadline, a second signal, or uvicorn shutting down without a drain): every session
still open sends `connection_close` (`server_shutdown`) and closes with 1012 at once.
Either way a session then stops its model and tools under STOP_TIMEOUT, as on any end.

Sessions `join` the drain for their lifetime; it calls back into them (`Drainable`)
synchronously, so no task per session waits on it. The drain reaches uvicorn's objects
through the lifespan state under `DRAIN_KEY`, as the transport limits do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol

import anyio
from starlette.websockets import WebSocket

from app.edge.gate import Admitted, Check, Refused

logger = logging.getLogger(__name__)

DRAIN_KEY: Final = "drain"

# Agent events that open or close a turn (Session._relay hands exactly these to `Turn`).
TURN_EVENTS: Final = frozenset(
    {"bidi_response_start", "bidi_response_stop", "bidi_tool_use_blocks", "tool_result"}
)


class Turn:
    """Whether a session owes its client something: a response in progress (between the
    model's response start and stop), a tool running, or an answer not yet begun (to the
    user's text, or to a tool's result, which the model answers in a new response).

    Opening events are counted before their frames are sent and closing ones after, so
    the drain never sees a turn as over while its last frame is still on its way. A model
    that never answers keeps the turn open: DRAIN_TIMEOUT bounds that."""

    __slots__ = ("_owed", "_responding", "_tools")

    def __init__(self) -> None:
        self._responding = False
        self._owed = False
        self._tools: set[str] = set()

    @property
    def busy(self) -> bool:
        return self._responding or self._owed or bool(self._tools)

    def owe(self) -> None:
        """The user sent text: an answer is owed."""
        self._owed = True

    def opening(self, kind: str, event: Mapping[str, Any]) -> None:
        if kind == "bidi_response_start":
            self._responding, self._owed = True, False
        elif kind == "bidi_tool_use_blocks":
            self._tools.update(use["toolUseId"] for use in event["tool_uses"])

    def closed(self, kind: str, event: Mapping[str, Any]) -> bool:
        """After the event's frames went out: whether the turn is over now."""
        if kind == "bidi_response_stop":
            # As strands does: a finished response settles an owed answer too.
            self._responding = self._owed = False
        elif kind == "tool_result" and self._tools:
            self._tools.discard(event["tool_result"]["toolUseId"])
            self._owed = not self._tools  # the model answers the results next
        else:
            return False
        return not self.busy


class Drainable(Protocol):
    def wind_down(self) -> None:
        """End as soon as nothing is in progress (now, if nothing is)."""

    def close_now(self) -> None:
        """End at once: `connection_close` (`server_shutdown`), then close 1012."""


DrainState = Literal["serving", "draining", "closing"]


class Drain:
    def __init__(self, timeout: float, close_within: float) -> None:
        self.timeout = timeout  # DRAIN_TIMEOUT
        # How long closed sessions may take to finish (their close and model stop deadlines).
        self.close_within = close_within
        self.state: DrainState = "serving"
        self._sessions: set[Drainable] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._settled = asyncio.Event()  # no session left, or closing: the drain's wait is over
        self._settled.set()

    @property
    def draining(self) -> bool:
        return self.state != "serving"

    def __len__(self) -> int:
        return len(self._sessions)

    def join(self, session: Drainable) -> None:
        self._sessions.add(session)
        self._empty.clear()
        if self.state != "closing":
            self._settled.clear()
        if self.state == "draining":  # admitted just before the drain began
            session.wind_down()
        elif self.state == "closing":
            session.close_now()

    def leave(self, session: Drainable) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._empty.set()
            self._settled.set()

    def begin(self) -> None:
        if self.state != "serving":
            return
        self.state = "draining"
        logger.info("draining: %d session(s) open, up to %gs to finish", len(self._sessions), self.timeout)
        for session in list(self._sessions):  # a session may leave while told
            session.wind_down()

    def close_now(self) -> None:
        if self.state == "closing":
            return
        self.state = "closing"
        self._settled.set()
        if self._sessions:
            logger.info("closing %d session(s) now", len(self._sessions))
        for session in list(self._sessions):
            session.close_now()

    async def run(self) -> None:
        """The whole drain: begin, wait up to DRAIN_TIMEOUT for the sessions to end, close
        the rest, and wait (bounded) for them to finish closing."""
        self.begin()
        with anyio.move_on_after(self.timeout):
            await self._settled.wait()
        self.close_now()
        with anyio.move_on_after(self.close_within):
            await self._empty.wait()
        if self._sessions:
            logger.warning("%d session(s) still closing after %gs", len(self._sessions), self.close_within)


def drain_of(app_state: Mapping[str, Any]) -> Drain | None:
    """The app's drain from the lifespan state; None where no lifespan ran."""
    drain = app_state.get(DRAIN_KEY)
    return drain if isinstance(drain, Drain) else None


def refuse_while_draining(drain: Drain) -> Check:
    """The gate's first check: a process that is stopping takes no new session (503, no
    Retry-After: the client should reconnect at once, and the load balancer sends it to
    another process)."""

    async def check(websocket: WebSocket, verdict: Admitted) -> Admitted | Refused:
        if drain.draining:
            return Refused(
                status=503,
                reason="draining",
                detail="the server is shutting down",
                message="the server is shutting down; connect again",
            )
        return verdict

    return check
