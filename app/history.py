"""Bounding a session's conversation history (strands' `BidiAgent.messages` grows forever).

After each message is added, the oldest ones are dropped so that at most
`MAX_HISTORY_MESSAGES` remain, cutting only where a user's own words begin (never leaving
an orphaned tool result or a reply without its question) and never dropping a message
strands still has to fill in (a transcript or text block still streaming).
"""

from __future__ import annotations

from typing import Any

from strands.types.content import Message


def _pending(message: Message) -> bool:
    metadata: Any = message.get("metadata") or {}
    return bool(metadata.get("custom", {}).get("bidi", {}).get("status") == "pending")


def _starts_a_turn(message: Message) -> bool:
    content = message.get("content") or []
    return (
        message.get("role") == "user"
        and any("text" in block for block in content)
        and not any("toolResult" in block for block in content)
    )


def trim_history(messages: list[Message], limit: int) -> int:
    """Drop the oldest messages beyond `limit`; returns how many were dropped."""
    excess = len(messages) - limit
    if excess <= 0:
        return 0
    first_pending = next((i for i, m in enumerate(messages) if _pending(m)), len(messages))
    boundaries = [i for i in range(1, first_pending + 1) if i < len(messages) and _starts_a_turn(messages[i])]
    if not boundaries:
        return 0
    cut = next((b for b in boundaries if b >= excess), boundaries[-1])
    del messages[:cut]
    return cut
