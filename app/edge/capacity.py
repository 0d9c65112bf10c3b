"""Admission: at most MAX_SESSIONS sessions per process; the next handshake gets HTTP 503.

Past about 250 full-duplex sessions per core every session's latency grows to seconds;
refusing the newest session keeps the others within their targets, and a client (or a
load balancer's retry) can go elsewhere.

The check reserves a `Slot` synchronously (no await between looking and taking), so two
handshakes can never both take the last one, whatever runs between the gate and the
session. The session releases its slot as soon as its outcome is decided, before it
tells the client and before its model is stopped, so a client that reconnects on seeing
the close is admitted; releasing is idempotent, and the session's own `finally` releases
it again on every other path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from starlette.websockets import WebSocket

from app.edge.gate import Admitted, Check, Refused

# Sessions last minutes: a client told to come back at once would only be refused again.
RETRY_AFTER_SECONDS: Final = 5


class Slot:
    """One admitted session's share of the capacity; `release()` may be called any number of times."""

    __slots__ = ("_capacity",)

    def __init__(self, capacity: Capacity) -> None:
        self._capacity: Capacity | None = capacity

    def release(self) -> None:
        if self._capacity is not None:
            self._capacity.used -= 1
            self._capacity = None


class Capacity:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: unlimited
        self.used = 0

    @property
    def full(self) -> bool:
        return 0 < self.limit <= self.used

    def reserve(self) -> Slot | None:
        if self.full:
            return None
        self.used += 1
        return Slot(self)


def admission(capacity: Capacity) -> Check | None:
    """The gate's last check: a slot for the session, or 503 with Retry-After; None when
    MAX_SESSIONS is 0 (no limit), so the gate does no work for it."""
    if not capacity.limit:
        return None

    async def check(websocket: WebSocket, verdict: Admitted) -> Admitted | Refused:
        slot = capacity.reserve()  # no await before this: see the module's docstring
        if slot is None:
            return Refused(
                status=503,
                reason="capacity",
                detail=f"MAX_SESSIONS={capacity.limit} reached",
                message="the server is at capacity; try again later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return replace(verdict, slot=slot)

    return check
