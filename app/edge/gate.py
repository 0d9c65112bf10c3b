"""The handshake gate: every check a connection must pass before a session (and its
model) exists, in order, cheapest and least revealing first.

    draining ─> origin  ─> auth  ─> capacity  ─> Session
      503        403      401/403    503

A check either refines the `Admitted` verdict (auth adds the subprotocol to echo and who
the client is) or returns `Refused`, which the endpoint turns into an HTTP denial response
on the handshake: no socket is accepted and no model is built. Capacity comes last and
reserves a slot without an await, so no other handshake can slip in between looking and
taking; the verdict carries the slot to the session, which releases it when it ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from app.edge.refusals import RefusalReason, Refusals

if TYPE_CHECKING:
    from app.edge.capacity import Slot


@dataclass(frozen=True, slots=True)
class Admitted:
    subprotocol: str | None = None  # echoed in the handshake response (Sec-WebSocket-Protocol)
    principal: str | None = None  # who the client is, for the log (never the token itself)
    session_id: str | None = None  # one given by the platform (AgentCore), to use as ours
    slot: Slot | None = None  # the capacity this session holds (app/edge/capacity.py)

    def release(self) -> None:
        """Give back what admission reserved; safe to call more than once."""
        if self.slot is not None:
            self.slot.release()


@dataclass(frozen=True, slots=True)
class Refused:
    status: int  # HTTP status of the denial response
    reason: RefusalReason
    detail: str  # for the log: why, never a token or client-sized text
    message: str  # for the client
    headers: Mapping[str, str] = field(default_factory=dict)  # WWW-Authenticate, Retry-After


Check = Callable[[WebSocket, Admitted], Awaitable[Admitted | Refused]]


class Gate:
    def __init__(self, checks: Sequence[Check | None], refusals: Refusals) -> None:
        self.checks = tuple(check for check in checks if check is not None)  # None: a policy that is off
        self.refusals = refusals

    async def admit(self, websocket: WebSocket) -> Admitted | None:
        """The verdict, or None once the handshake has been refused (and counted)."""
        verdict = Admitted()
        for check in self.checks:
            result = await check(websocket, verdict)
            if isinstance(result, Refused):
                await self._refuse(websocket, result)
                return None
            verdict = result
        return verdict

    async def _refuse(self, websocket: WebSocket, refused: Refused) -> None:
        self.refusals.record(refused.reason, refused.detail)
        body = {"error": refused.reason, "message": refused.message}
        await websocket.send_denial_response(
            JSONResponse(body, status_code=refused.status, headers=dict(refused.headers))
        )
