"""Frames any client can craft to break the protocol's promises, through a real WebSocket
(httpx-ws's ASGI transport): each gets a coded error, and a non-fatal one leaves the
session answering. `test_server_edges.py` sends the same through `python -m app`."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from starlette.applications import Starlette

from tests.support import (
    ScriptedProvider,
    connect,
    expect_close,
    of_type,
    receive_json,
    receive_until,
    start,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param("[" * 10_000, "invalid_json", id="deep-array"),
        pytest.param('{"a":' * 10_000, "invalid_json", id="deep-object"),
        pytest.param('{"type":"text","text":"\\ud800"}', "invalid_text", id="lone-high-surrogate"),
        pytest.param('{"text":"ok \\udc00 ok"}', "invalid_text", id="lone-low-surrogate"),
    ],
)
async def test_hostile_text_gets_coded_error_and_session_goes_on(
    app: Starlette, scripted: ScriptedProvider, frame: str, code: str
) -> None:
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(frame)
        error = await receive_json(ws)
        assert (error["type"], error["code"], error["fatal"]) == ("error", code, False)
        await ws.send_text('{"type":"text","text":"after"}')
        seen = await receive_until(ws, "transcript", final=True)
    assert seen[-1]["text"] == "You said: after"
    assert scripted.model.texts == ["after"]  # the model never saw the hostile text


async def test_lone_surrogate_never_reaches_the_echo_model(app_factory: Callable[..., Starlette]) -> None:
    # The echo model failed the whole session (model_error, 1011) encoding such a text.
    app = app_factory(None, model_provider="echo")
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text('{"type":"text","text":"\\ud83d\\ude00 \\ud800"}')
        error = await receive_json(ws)
        assert (error["code"], error["fatal"]) == ("invalid_text", False)
        await ws.send_text('{"type":"text","text":"\\ud83d\\ude00 paired"}')
        seen = await receive_until(ws, "transcript", final=True)
    assert seen[-1]["text"] == "\U0001f600 paired"


async def test_text_over_the_limit_in_utf8_bytes_is_fatal_1009(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, max_message_bytes=16_384, max_text_chars=8_000)
    frame = json.dumps({"type": "text", "text": "\U0001f600" * 4_100}, ensure_ascii=False)
    assert len(frame) < 16_384 < len(frame.encode())  # 4,128 characters, 16,428 bytes
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(frame)
        seen, code = await expect_close(ws)
    assert code == 1009
    assert of_type(seen, "error") == [
        {
            "type": "error",
            "code": "message_too_large",
            "message": "frame of 16428 bytes exceeds the limit of 16384",
            "fatal": True,
        }
    ]
    assert scripted.model.texts == []
    await wait_closed(app)
