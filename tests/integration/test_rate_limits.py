"""Input rate limits through a real WebSocket: audio by its seconds, every other frame by
count. Over a limit a frame is delayed, never dropped; the client is warned once an
episode, and closed with 1008 when the episode outlasts RATE_LIMIT_GRACE."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from httpx_ws import AsyncWebSocketSession
from starlette.applications import Starlette
from wsproto.utilities import LocalProtocolError

from tests.support import (
    ScriptedProvider,
    connect,
    expect_close,
    of_type,
    receive_until,
    start,
    tone,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FRAME_SECONDS = 0.1
FRAME_SAMPLES = 1600  # 100 ms at 16 kHz, the scripted model's rate (no resampling)


def frames(count: int, samples: int = FRAME_SAMPLES) -> list[bytes]:
    """Distinct frames, so the model's input shows any frame missing or out of order."""
    return [tone(samples, value=n) for n in range(1, count + 1)]


async def send_paced(ws: AsyncWebSocketSession, chunks: list[bytes], interval: float) -> None:
    # The sleeps set the client's sending rate (the load under test); they synchronise nothing.
    for chunk in chunks:
        await ws.send_bytes(chunk)
        await anyio.sleep(interval)


async def send_until_closed(ws: AsyncWebSocketSession, chunks: list[bytes], interval: float) -> None:
    """`send_paced` by a client that goes on until the server closes; the test reads the close."""
    with contextlib.suppress(LocalProtocolError):  # wsproto: a send once the server's close came in
        await send_paced(ws, chunks, interval)


async def test_audio_at_five_times_real_time_is_warned_then_closed_1008(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, audio_rate_limit=2.0, audio_burst_seconds=0.2, rate_limit_grace=0.5)
    sent = frames(200)
    async with connect(app) as ws:
        await start(ws)
        began = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send_until_closed, ws, sent, FRAME_SECONDS / 5)
            seen, code = await expect_close(ws)
            tasks.cancel_scope.cancel()
        elapsed = anyio.current_time() - began
    assert code == 1008
    errors = [(e["code"], e["fatal"]) for e in of_type(seen, "error")]
    assert errors == [("rate_limited", False), ("rate_limited", True)]  # one warning, then the end
    assert seen[-1] == {"type": "connection_close", "reason": "rate_limited"}
    # Read no faster than the limit: at most the burst plus 2 s of audio a second (and the
    # frame that crossed it), where 5x would have been 5 s a second.
    received = bytes(scripted.model.audio_in)
    accepted = len(received) // (2 * FRAME_SAMPLES)
    assert accepted * FRAME_SECONDS <= 0.2 + 2.0 * elapsed + FRAME_SECONDS
    # What reached the model is the stream's beginning, in order.
    assert received == b"".join(sent[:accepted])
    assert app.state.context.refusals.counts == {"rate_limited": 1}
    await wait_closed(app)


async def test_audio_beyond_the_burst_is_delayed_not_dropped(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, audio_rate_limit=2.0, audio_burst_seconds=0.2, rate_limit_grace=1.0)
    sent = frames(5)  # 0.5 s at once: 0.2 s within the burst, 0.3 s over it
    async with connect(app) as ws:
        await start(ws)
        began = anyio.current_time()
        for chunk in sent:
            await ws.send_bytes(chunk)
        await ws.send_text('{"type":"end"}')
        seen, code = await expect_close(ws)
        took = anyio.current_time() - began
    assert code == 1000
    assert [(e["code"], e["fatal"]) for e in of_type(seen, "error")] == [("rate_limited", False)]
    assert bytes(scripted.model.audio_in) == b"".join(sent)  # every frame, the delayed ones too
    assert took >= 0.3 / 2.0  # the 0.3 s over the burst, read at twice real time
    assert app.state.context.refusals.counts == {}


async def test_real_time_audio_with_bursts_is_untouched_and_reaches_the_model_whole(
    app: Starlette, scripted: ScriptedProvider
) -> None:
    # The defaults (2x real time, 2 s burst): what a microphone, or one catching up, sends.
    sent = frames(200, samples=320)  # 20 ms each: 4 s of audio
    async with connect(app) as ws:
        await start(ws)
        for chunk in sent[:50]:  # 1 s at once
            await ws.send_bytes(chunk)
        await send_paced(ws, sent[50:150], 0.02)  # 2 s at real time
        for chunk in sent[150:]:  # 1 s at once again
            await ws.send_bytes(chunk)
        await ws.send_text('{"type":"end"}')
        seen, code = await expect_close(ws, timeout=10)
    assert code == 1000
    assert of_type(seen, "error") == []
    assert bytes(scripted.model.audio_in) == b"".join(sent)


async def test_a_text_burst_over_the_limit_is_answered_in_full_after_one_warning(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, text_rate_limit=20.0, text_burst=5, rate_limit_grace=1.0)
    texts = [f"message {n}" for n in range(10)]
    async with connect(app) as ws:
        await start(ws)
        for text in texts:  # 5 within the burst, 5 more delayed by 50 ms each
            await ws.send_text(json.dumps({"type": "text", "text": text}))
        seen: list[Any] = []
        while len(of_type(seen, "response_complete")) < len(texts):
            seen += await receive_until(ws, "response_complete")
        await ws.send_text('{"type":"ping"}')
        seen += await receive_until(ws, "pong")  # the session goes on
    errors = of_type(seen, "error")
    assert [(e["code"], e["fatal"]) for e in errors] == [("rate_limited", False)]
    assert "more than 20 messages a second" in errors[0]["message"]
    assert scripted.model.texts == texts
    assert app.state.context.refusals.counts == {}


async def test_a_ping_flood_counts_against_the_message_limit_and_is_closed_1008(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, text_rate_limit=20.0, text_burst=5, rate_limit_grace=0.3)
    async with connect(app) as ws:
        await start(ws)
        for _ in range(100):
            await ws.send_text('{"type":"ping"}')
        seen, code = await expect_close(ws)
    assert code == 1008
    assert [(e["code"], e["fatal"]) for e in of_type(seen, "error")] == [
        ("rate_limited", False),
        ("rate_limited", True),
    ]
    # The burst, then 20 a second for the grace period: far from the 100 sent.
    assert 5 <= len(of_type(seen, "pong")) <= 5 + 20 * 0.3 + 1
    assert seen[-1] == {"type": "connection_close", "reason": "rate_limited"}
    assert app.state.context.refusals.counts == {"rate_limited": 1}
