"""AgentCore Runtime's session id as ours, so our log lines and AgentCore's line up.

AgentCore adds `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` to every request it forwards.
Any client that reaches the server directly can send it too, so it is used only when it
is a plausible id (1-128 of `A-Za-z0-9._:-`: nothing that could forge a log line), and
never where another live session already has it: two connections in one AgentCore
session get `<id>.2`, `<id>.3`, ... as our ids, since the registry and the logs need
each session's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Container
from dataclasses import replace

from starlette.websockets import WebSocket

from app.edge.gate import Admitted

logger = logging.getLogger(__name__)

SESSION_ID_HEADER = "x-amzn-bedrock-agentcore-runtime-session-id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


async def agentcore_session_id(websocket: WebSocket, admitted: Admitted) -> Admitted:
    """A gate check that never refuses: it carries a valid header's id to the session."""
    given = websocket.headers.get(SESSION_ID_HEADER)
    if given is None:
        return admitted
    if _VALID_ID.fullmatch(given) is None:
        logger.debug("ignored a %s header of %d characters: not a valid id", SESSION_ID_HEADER, len(given))
        return admitted
    return replace(admitted, session_id=given)


def unique_session_id(given: str, live: Container[str]) -> str:
    """`given`, or the first `given.N` no live session has."""
    candidate, number = given, 1
    while candidate in live:
        number += 1
        candidate = f"{given}.{number}"
    return candidate
