"""The local model under abuse, through the real WebSocket: noise that never ends, an
utterance longer than its bound, a recording sent ten times faster than real time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect

from app.models.local import local_provider
from tests.decoders import WatchedPool
from tests.speech import noise, silence, speech
from tests.support import connect, of_type, receive_until, start, stream_audio

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

QUESTION = "what time is it in tokyo"


async def answered(ws: AsyncWebSocketSession, timeout: float) -> tuple[list[Any], list[Any]]:
    """The messages up to the user's final transcript, then up to the answer's end."""
    heard = await receive_until(ws, "transcript", timeout=timeout, role="user", final=True)
    answer = await receive_until(ws, "transcript", timeout=timeout, role="assistant", final=True)
    return heard, answer


async def test_two_noise_streams_do_not_starve_a_third_speaker(
    app_factory: Callable[..., Any], settings_factory: Callable[..., Any]
) -> None:
    # Noise is speech that never ends to the endpointer: each noise stream holds a decoder
    # for as long as it may, and these two hold both while a third client asks a question.
    bound = 4.0
    settings = settings_factory(
        model_provider="local",
        max_utterance_seconds=bound,
        # A session whose input waited for a decoder would stall well before one frees up
        # (8 frames queued, then 1.5 s): 1013. The input must never wait for one.
        audio_queue_size=8,
        input_stall_timeout=1.5,
        local_audio_lead_ms=10000,
    )
    pool = WatchedPool(2)
    app = app_factory(local_provider(settings, pool), settings=settings)
    question = silence(0.3) + await speech(QUESTION) + silence(1.0)
    noise_seen: list[Any] = []
    noise_closes: list[int] = []

    async def make_noise(ws: AsyncWebSocketSession, seed: int) -> None:
        loop = noise(2.0, seed)
        while True:  # until cancelled: without a pause, in real time
            await stream_audio(ws, loop)

    async def read(ws: AsyncWebSocketSession) -> None:
        try:
            while True:
                event = await ws.receive()
                if isinstance(data := getattr(event, "data", None), str):
                    noise_seen.append(json.loads(data))
        except WebSocketDisconnect as exc:
            noise_closes.append(exc.code)

    async with (
        connect(app, "audio=binary") as noisy,
        connect(app, "audio=binary") as noisier,
        connect(app, "audio=binary") as speaker,
    ):
        for ws in (noisy, noisier, speaker):
            await start(ws)
        async with anyio.create_task_group() as streams:
            for seed, ws in enumerate((noisy, noisier)):
                streams.start_soon(make_noise, ws, seed)
                streams.start_soon(read, ws)
            await pool.until(lambda p: p.lent == 2)  # both decoders held by noise
            await stream_audio(speaker, question)
            asked = time.monotonic()
            heard, answer = await answered(speaker, timeout=bound + 5)
            latency = time.monotonic() - asked
            streams.cancel_scope.cancel()
    assert [m["text"] for m in of_type(heard, "transcript") if m["final"]] == [QUESTION]
    assert of_type(answer, "tool_use")[0]["name"] == "current_time"
    assert of_type(heard + answer + noise_seen, "error") == []
    assert noise_closes == [], "a noise stream's session was closed"
    assert max(pool.waits) >= 1.0, "the speaker never waited for a decoder: the test proves nothing"
    assert latency < bound  # at most one bound after asking, whatever the noise does


async def test_an_utterance_longer_than_the_bound_is_answered_in_parts(
    app_factory: Callable[..., Any],
) -> None:
    app = app_factory(None, model_provider="local", max_utterance_seconds=2.0, local_audio_lead_ms=10000)
    talk = silence(0.3) + await speech(" ".join([QUESTION] * 3))  # 4.9 s without a pause
    after = silence(1.0) + await speech("good morning") + silence(1.0)
    talked = anyio.Event()

    async def speak(ws: AsyncWebSocketSession) -> None:
        await stream_audio(ws, talk, speed=4)
        talked.set()
        await stream_audio(ws, after, speed=4)  # and the session goes on

    finals: list[str] = []
    async with connect(app, "audio=binary") as ws, anyio.create_task_group() as tasks:
        await start(ws)
        tasks.start_soon(speak, ws)
        with anyio.fail_after(20):
            while "good morning" not in finals:
                heard = await receive_until(ws, "transcript", timeout=20, role="user", final=True)
                finals.append(heard[-1]["text"])
                if len(finals) == 1:
                    assert not talked.is_set(), (
                        "the first transcript came at the end of the talk, not at the bound"
                    )
        answer = await receive_until(ws, "transcript", role="assistant", final=True)
    # Cut into parts of at most two seconds, each recognised (the last, a second of a word
    # or two, may be nothing to the grammar) and answered.
    assert len(finals) >= 2 + 1, finals
    assert finals[-1] == "good morning"
    assert answer[-1]["text"].startswith("Hello!")


async def test_the_reply_to_the_first_part_does_not_talk_over_the_rest(
    app_factory: Callable[..., Any],
) -> None:
    app = app_factory(None, model_provider="local", max_utterance_seconds=2.0, local_audio_lead_ms=300)
    talk = silence(0.3) + await speech(f"{QUESTION} {QUESTION}")  # 3.3 s: cut once, then more
    talked = anyio.Event()

    async def speak(ws: AsyncWebSocketSession) -> None:
        await stream_audio(ws, talk, speed=2)
        talked.set()
        await stream_audio(ws, silence(1.0), speed=2)

    async with connect(app, "audio=binary") as ws, anyio.create_task_group() as tasks:
        await start(ws)
        tasks.start_soon(speak, ws)
        seen = await receive_until(ws, "interruption", timeout=10)
        assert not talked.is_set(), "the reply to the first part went on while the user still spoke"
    assert of_type(seen, "response_start")


async def test_a_recording_sent_at_ten_times_real_time_is_answered(
    app_factory: Callable[..., Any],
) -> None:
    # A recorded question, as a client sends a file: faster than real time, and then
    # nothing, not the second of silence a live microphone would go on with.
    app = app_factory(None, model_provider="local", local_audio_lead_ms=10000)
    recording = silence(0.3) + await speech(QUESTION)
    async with connect(app, "audio=binary") as ws:
        await start(ws)
        await stream_audio(ws, recording, speed=10)
        heard, answer = await answered(ws, timeout=5)
    assert [m["text"] for m in of_type(heard, "transcript") if m["final"]] == [QUESTION]
    assert of_type(answer, "tool_use")[0]["name"] == "current_time"
