from __future__ import annotations

from typing import Any

from app.history import trim_history


def user(text: str) -> Any:
    return {"role": "user", "content": [{"text": text}]}


def assistant(text: str, status: str = "complete") -> Any:
    return {
        "role": "assistant",
        "content": [{"text": text}],
        "metadata": {"custom": {"bidi": {"kind": "transcript", "status": status}}},
    }


def tool_pair(tool_use_id: str) -> list[Any]:
    return [
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": tool_use_id, "name": "calc", "input": {}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": tool_use_id, "status": "success", "content": [{"text": "4"}]}}
            ],
        },
    ]


def test_short_history_is_kept() -> None:
    messages = [user("a"), assistant("b")]
    assert trim_history(messages, 10) == 0
    assert len(messages) == 2


def test_cuts_at_the_start_of_a_turn() -> None:
    messages = [
        user("1"),
        assistant("1"),
        *tool_pair("t1"),
        assistant("1b"),
        user("2"),
        assistant("2"),
        user("3"),
    ]
    dropped = trim_history(messages, 4)
    assert dropped == 5
    assert messages[0] == user("2")
    assert len(messages) == 3


def test_never_leaves_an_orphaned_tool_result() -> None:
    messages = [user("1"), *tool_pair("t1"), assistant("1"), user("2"), assistant("2")]
    trim_history(messages, 3)
    assert messages[0] == user("2")
    assert all("toolResult" not in block for m in messages for block in m["content"])


def test_never_drops_a_pending_message() -> None:
    messages = [
        user("1"),
        assistant("still speaking", status="pending"),
        user("2"),
        assistant("2"),
        user("3"),
    ]
    assert trim_history(messages, 2) == 0  # the only turn boundary past the limit is behind a pending message
    assert len(messages) == 5
