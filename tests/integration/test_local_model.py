"""The offline `local` provider through the real WebSocket: no network, no cloud."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest
from starlette.applications import Starlette
from strands.bidi.types import AudioDelta

from tests.decoders import HeldPool
from tests.openai_server import run_openai_server
from tests.speech import frames, rms, silence, speech
from tests.support import (
    FakeOpenWeatherMap,
    assert_no_session_tasks,
    connect,
    of_type,
    receive_until,
    start,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def local_model_tasks(name: str = "") -> list[asyncio.Task[Any]]:
    """The local model's tasks (all named `local-model:...`), or those of one name."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"local-model:{name}")]


@pytest.fixture
def local_app(app_factory: Callable[..., Starlette]) -> Starlette:
    # Audio may run far ahead of playback here, so tests need not wait for it in real time.
    return app_factory(None, model_provider="local", local_audio_lead_ms=10000)


async def until_assistant_final(ws: Any, timeout: float = 20) -> list[Any]:
    seen: list[Any] = []
    with anyio.fail_after(timeout):
        while not [m for m in of_type(seen, "transcript") if m["role"] == "assistant" and m["final"]]:
            seen += await receive_until(ws, "transcript", timeout=timeout, final=True)
    seen += await receive_until(ws, "response_complete", timeout=timeout)
    return seen


def audio_of(seen: list[Any]) -> bytes:
    return b"".join(base64.b64decode(m["audio"]) for m in of_type(seen, "audio"))


async def test_typed_arithmetic_uses_the_calculator_and_answers_aloud(local_app: Starlette) -> None:
    async with connect(local_app) as ws:
        info = await start(ws)
        assert (info["provider"], info["model"]) == ("local", "local-rules")
        await ws.send_text(json.dumps({"type": "text", "text": "what is 12 times 7"}))
        seen = await until_assistant_final(ws)
    tool_use = of_type(seen, "tool_use")[0]
    assert (tool_use["name"], tool_use["input"]) == ("calculator", {"expression": "12 * 7"})
    result = of_type(seen, "tool_result")[0]
    assert (result["status"], result["content"]) == ("success", "84")
    answer = [m for m in of_type(seen, "transcript") if m["final"]][-1]
    assert answer["role"] == "assistant"
    assert "84" in answer["text"]
    audio = of_type(seen, "audio")
    assert {m["sample_rate"] for m in audio} == {24000}
    pcm = audio_of(seen)
    assert len(pcm) / 2 / 24000 >= 0.5
    assert rms(pcm) > 500  # speech, not silence
    assert max(len(base64.b64decode(m["audio"])) for m in audio) <= 24000 // 10 * 2  # chunks of <= 100 ms


async def test_spoken_question_gets_transcripts_and_a_spoken_reply(local_app: Starlette) -> None:
    utterance = silence(0.3) + await speech("what time is it in tokyo") + silence(1.0)
    async with connect(local_app, "audio=binary") as ws:
        await start(ws)
        for frame in frames(utterance):  # 20 ms binary frames
            await ws.send_bytes(frame)
        seen = await until_assistant_final(ws)
    user = [m for m in of_type(seen, "transcript") if m["role"] == "user"]
    assert any(not m["final"] for m in user), "no partial user transcript"
    finals = [m for m in user if m["final"]]
    assert len(finals) == 1
    assert finals[0]["text"]
    assert all(m["content_id"] == finals[0]["content_id"] for m in user)
    assert finals[0]["text"] == "what time is it in tokyo"  # in the grammar: recognised exactly
    assert of_type(seen, "tool_use")[0]["name"] == "current_time"
    reply = b"".join(m for m in seen if isinstance(m, bytes))
    assert len(reply) / 2 / 24000 >= 0.5
    assert rms(reply) > 500


async def test_an_utterance_shown_to_the_user_is_answered(local_app: Starlette) -> None:
    # Loud, fast speech, as a browser's gain control makes of a microphone: pocketsphinx
    # shows "what", then ends the utterance with an empty final hypothesis. What the user
    # was shown as their final words must still get an answer.
    loud = np.frombuffer(await speech("what is twelve times seven", 16000, 170), dtype="<i2") * 1.8
    utterance = silence(0.5) + np.clip(loud, -32768, 32767).astype("<i2").tobytes() + silence(1.0)
    async with connect(local_app, "audio=binary") as ws:
        await start(ws)
        for frame in frames(utterance):
            await ws.send_bytes(frame)
        heard = await receive_until(ws, "transcript", role="user", final=True)
        try:
            await receive_until(ws, "response_start")  # an answer starts at once when it comes
            answered = True
        except TimeoutError:
            answered = False
    assert heard[-1]["text"] == "what"
    assert answered, "the user's final transcript was never answered"


async def test_speaking_over_a_reply_interrupts_it(app_factory: Callable[..., Starlette]) -> None:
    app = app_factory(None, model_provider="local", local_audio_lead_ms=300)
    interruption = silence(0.2) + await speech("hello there what can you do") + silence(1.0)
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "help"}))  # a reply of several seconds
        first = await receive_until(ws, "audio")
        reply_id = of_type(first, "response_start")[-1]["response_id"]
        for frame in frames(interruption):
            await ws.send_bytes(frame)
        seen = await receive_until(ws, "interruption", timeout=10)
        after = await receive_until(ws, "response_complete", timeout=10, response_id=reply_id)
        rest = await receive_until(ws, "transcript", timeout=10, role="assistant")  # and it is answered
    reply_audio = audio_of(first + seen)
    assert len(reply_audio) / 2 / 24000 < 6, "the whole reply was sent before the interruption"
    assert not of_type(after, "audio"), "audio of the interrupted reply went on"
    assert rest[-1]["text"].startswith("Hello!")


async def test_local_sessions_leave_no_tasks(local_app: Starlette) -> None:
    async with connect(local_app) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"text": "help"}))
        await receive_until(ws, "audio")
        names = {t.get_name() for t in local_model_tasks()}
        assert names >= {"local-model:owner", "local-model:listener"}  # the reply may have ended
        for frame in frames(await speech("good morning")):
            await ws.send_bytes(frame)
    await wait_closed(local_app)
    await assert_no_session_tasks()
    assert not local_model_tasks()  # the model's task group ended with its session


async def test_text_model_brain_calls_tools_through_the_agent(app_factory: Callable[..., Starlette]) -> None:
    weather = FakeOpenWeatherMap()

    async with run_openai_server() as llm:
        app = app_factory(
            None,
            model_provider="local",
            local_brain="text_model",
            local_text_model=f"openai:test-model@{llm.base_url}",
            local_audio_lead_ms=10000,
            weather_api_key="k",
            http_transport=weather.transport,
        )
        async with connect(app) as ws:
            info = await start(ws)
            assert info["model"] == "local-text_model"
            await ws.send_text(json.dumps({"type": "text", "text": "What's the weather in Paris?"}))
            seen = await until_assistant_final(ws)
    tool_use = of_type(seen, "tool_use")[0]
    assert (tool_use["name"], tool_use["input"]) == ("weather", {"location": "Paris"})
    assert of_type(seen, "tool_result")[0]["content"].startswith("Paris, FR: clear sky, 21°C")
    answer = [m for m in of_type(seen, "transcript") if m["final"]][-1]["text"]
    assert answer.startswith("According to the weather service, Paris, FR: clear sky, 21°C")
    assert len(audio_of(seen)) / 2 / 24000 >= 0.5
    # The text model saw the system prompt, the tools, and then the tool's result.
    first, second = llm.requests
    assert first["messages"][0]["role"] == "system"
    assert {t["function"]["name"] for t in first["tools"]} == {"calculator", "current_time", "weather"}
    assert second["messages"][-1]["role"] == "tool"
    assert "clear sky" in second["messages"][-1]["content"]
    assert len(weather.requests) == 1


async def test_user_turns_that_arrive_together_run_one_at_a_time(
    settings_factory: Callable[..., Any],
) -> None:
    # Typed text (the input pump) and an end of speech (the listener) can start turns at
    # the same moment; here two typed turns arrive while a reply is being spoken.
    from strands.bidi.types import BidiMessage
    from strands.types.content import TextBlock

    from app.models.local import LocalModel, local_provider

    provider = local_provider(settings_factory(model_provider="local"))
    model = provider.build()
    assert isinstance(model, LocalModel)
    first_audio = anyio.Event()
    kinds: list[str] = []

    async def drain() -> None:
        async for event in model.receive():
            kinds.append(event["type"])
            if event["type"] == "bidi_audio_delta":
                first_audio.set()

    try:
        async with anyio.create_task_group() as tasks:
            await model.start(system_prompt="", tools=[])
            tasks.start_soon(drain)
            await model.send(BidiMessage(content=[TextBlock(text="help")]))  # several seconds of speech
            with anyio.fail_after(10):
                await first_audio.wait()
            async with anyio.create_task_group() as turns:
                turns.start_soon(model.send, BidiMessage(content=[TextBlock(text="good morning")]))
                turns.start_soon(model.send, BidiMessage(content=[TextBlock(text="hello there")]))
            assert len(local_model_tasks("response")) == 1, "a reply was left running beside the newest one"
            await model.stop()
    finally:
        provider.close()
    assert not local_model_tasks("response")
    # Replies never overlap: each ends before the next starts (stop() cut off the last one).
    starts_and_stops = [k for k in kinds if k in ("bidi_response_start", "bidi_response_stop")]
    assert starts_and_stops == ["bidi_response_start", "bidi_response_stop"] * 2 + ["bidi_response_start"]
    assert kinds.count("bidi_barge_in") == 2


async def test_the_local_models_limits_follow_the_settings(settings_factory: Callable[..., Any]) -> None:
    from app.models.local import LocalModel, local_provider

    provider = local_provider(
        settings_factory(model_provider="local", audio_queue_size=7, max_history_messages=9)
    )
    model = provider.build()
    assert isinstance(model, LocalModel)
    try:
        await model.start(system_prompt="", tools=[])
        assert model._audio.maxsize == 7
        assert model._events is not None
        assert model._events.maxsize == 7
        for n in range(20):
            model._remember({"role": "user", "content": [{"text": f"turn {n}"}]})
        assert len(model._history) == 9
        await model.stop()
    finally:
        provider.close()


async def test_stop_mid_recognition_waits_for_the_decoder_and_hands_it_back() -> None:
    from app.models.local import LocalModel
    from app.models.local.recognizer import Recognizer
    from app.models.local.rules import RulesBrain
    from app.models.local.synthesizer import Synthesizer

    pool = HeldPool(2)
    model = LocalModel(brain=RulesBrain(), recognizer=Recognizer(pool), synthesizer=Synthesizer())
    lent_when_stopped: list[int] = []

    async def stop() -> None:
        await model.stop()
        lent_when_stopped.append(pool.lent)

    # The session stops while a thread decodes its utterance: stop() must wait for that
    # thread, then find the decoder back in the pool and no task of the model left.
    utterance = silence(0.3) + await speech("what time is it in tokyo") + silence(1.0)
    async with anyio.create_task_group() as tasks:
        try:
            await model.start(system_prompt="", tools=[])
            await model.send(AudioDelta(format="pcm", source={"bytes": utterance}))
            with anyio.fail_after(10):
                await pool.feeding.wait()  # a thread is decoding the utterance
            tasks.start_soon(stop)
            with anyio.fail_after(10):
                await anyio.wait_all_tasks_blocked()  # stop() waits, or has returned
            assert (lent_when_stopped, pool.lent) == ([], 1), "stop() did not wait for the decoder's thread"
        finally:
            pool.go.set()
    assert lent_when_stopped == [0], "stop() returned before the decoder was back in the pool"
    assert pool.early == [], "a decoder was handed back while its thread was still in it"
    assert not local_model_tasks()
    # The pool serves as many utterances as it has decoders, the handed-back one included.
    recognizers = [Recognizer(pool), Recognizer(pool)]
    with anyio.fail_after(10):
        for recognizer in recognizers:
            await recognizer.begin()
        for recognizer in recognizers:
            await recognizer.feed(utterance)
        heard = [await recognizer.finish() for recognizer in recognizers]
    assert heard == ["what time is it in tokyo"] * 2
    assert pool.lent == 0
