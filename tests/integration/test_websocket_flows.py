"""The real app, the real BidiAgent loop and real tools, through a real WebSocket.

Only the model is scripted (tests/support.py: ScriptedModel, a BidiModel subclass).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from strands import tool
from strands.types.tools import ToolContext

from app.audio import Resampler
from app.main import create_app
from tests.support import (
    SESSION_TASK_PREFIXES,
    ScriptedProvider,
    assert_no_session_tasks,
    connect,
    expect_close,
    of_type,
    receive_json,
    receive_until,
    send_close,
    session_tasks,
    start,
    tone,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class TestWebSocketConnection:
    async def test_session_start_then_connection_start(self, app: Starlette) -> None:
        async with connect(app) as ws:
            info = await start(ws)
        assert info["protocol"] == 1
        assert info["provider"] == "scripted"
        assert info["model"] == "scripted"
        assert info["input_sample_rate"] == 16000
        assert info["output_sample_rate"] == 16000
        assert info["audio_format"] == "pcm16"
        assert info["audio_encoding"] == "base64"
        assert info["tools"] == ["calculator", "current_time", "weather"]
        assert len(info["session_id"]) == 32

    async def test_ping_is_answered_with_pong(self, app: Starlette) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"ping"}')
            assert await receive_json(ws) == {"type": "pong"}

    async def test_health_endpoints_report_busy_while_a_session_is_open(self, app: Starlette) -> None:
        import httpx

        async def ping() -> dict[str, Any]:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
                response = await client.get("/ping")
                assert response.status_code == 200
                body: dict[str, Any] = response.json()
                return body

        assert (await ping())["status"] == "Healthy"
        async with connect(app) as ws:
            await start(ws)
            busy = await ping()
            assert busy["status"] == "HealthyBusy"
            assert isinstance(busy["time_of_last_update"], int)
        await wait_closed(app)
        assert (await ping())["status"] == "Healthy"

    async def test_end_closes_with_1000_after_delivering_queued_input(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"last words"}')
            await ws.send_text('{"type":"end"}')
            seen, code = await expect_close(ws)
        assert code == 1000
        assert of_type(seen, "connection_close") == [{"type": "connection_close", "reason": "client_end"}]
        assert scripted.model.texts == ["last words"]
        await wait_closed(app)
        assert scripted.model.stop_calls >= 1


class TestTextMessageFlows:
    async def test_text_round_trip(self, app: Starlette, scripted: ScriptedProvider) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"type": "text", "text": "hello there"}))
            seen = await receive_until(ws, "response_complete")
        kinds = [m["type"] for m in seen]
        assert kinds[0] == "response_start"
        transcripts = of_type(seen, "transcript")
        assert [t["final"] for t in transcripts] == [False, False, True]
        assert transcripts[-1]["text"] == "You said: hello there"
        assert transcripts[-1]["role"] == "assistant"
        # Partials carry the text so far (the model sends two halves), then the final.
        texts = [t["text"] for t in transcripts]
        assert texts == ["You said: ", "You said: hello there", "You said: hello there"]
        assert len({t["content_id"] for t in transcripts}) == 1
        assert of_type(seen, "audio")[0]["sample_rate"] == 16000

    async def test_short_form_text(self, app: Starlette, scripted: ScriptedProvider) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"text": "short"}')
            seen = await receive_until(ws, "transcript", final=True)
        assert seen[-1]["text"] == "You said: short"

    async def test_several_texts_in_sequence_each_answered(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        words = ["one", "two", "three", "four"]
        async with connect(app) as ws:
            await start(ws)
            for word in words:
                await ws.send_text(json.dumps({"type": "text", "text": word}))
            finals: list[str] = []
            while len(finals) < len(words):
                finals.append((await receive_until(ws, "transcript", final=True))[-1]["text"])
        assert finals == [f"You said: {w}" for w in words]
        assert scripted.model.texts == words


class TestAudioMessageFlows:
    async def test_audio_round_trip_binary(self, app: Starlette, scripted: ScriptedProvider) -> None:
        pcm = tone(320, value=1234)
        async with connect(app) as ws:
            await start(ws)
            await ws.send_bytes(pcm)
            seen = await receive_until(ws, "response_complete")
        audio = of_type(seen, "audio")
        assert base64.b64decode(audio[0]["audio"]) == pcm
        assert of_type(seen, "transcript")[-1] == {
            **of_type(seen, "transcript")[-1],
            "role": "user",
            "final": True,
        }
        assert bytes(scripted.model.audio_in) == pcm

    async def test_many_chunks_binary_and_base64_arrive_in_order(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        chunks = [tone(320, value=i) for i in range(1, 101)]
        async with connect(app) as ws:
            await start(ws)
            for i, chunk in enumerate(chunks):
                if i % 2:
                    await ws.send_bytes(chunk)
                else:
                    await ws.send_text(json.dumps({"audio": base64.b64encode(chunk).decode()}))
            await ws.send_text('{"type":"end"}')
            await expect_close(ws)
        assert bytes(scripted.model.audio_in) == b"".join(chunks)

    async def test_base64_audio_with_explicit_fields(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        pcm = tone(160)
        message = {
            "type": "audio",
            "audio": base64.b64encode(pcm).decode(),
            "sample_rate": 16000,
            "format": "pcm16",
            "channels": 1,
        }
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text(json.dumps(message))
            await receive_until(ws, "response_complete")
        assert bytes(scripted.model.audio_in) == pcm

    async def test_client_rates_are_resampled_to_and_from_the_model(
        self, app_factory: Callable[..., Starlette]
    ) -> None:
        scripted = ScriptedProvider(input_rate=16000, output_rate=24000)
        app = app_factory(scripted)
        one_second_48k = tone(48000)
        async with connect(app, "input_sample_rate=48000&output_sample_rate=8000&audio=binary") as ws:
            info = await start(ws)
            assert (info["input_sample_rate"], info["output_sample_rate"]) == (48000, 8000)
            frames = [one_second_48k[i : i + 1920] for i in range(0, len(one_second_48k), 1920)]  # 20 ms
            for frame in frames:
                await ws.send_bytes(frame)
            # The model answers every non-empty resampled chunk; the filter delays the first ones.
            reference = Resampler(48000, 16000)
            expected = [len(out) for out in map(reference, frames) if out]
            seen: list[Any] = []
            while len(of_type(seen, "response_complete")) < len(expected):
                seen += await receive_until(ws, "response_complete")
        assert len(scripted.model.audio_in) == sum(expected)
        # 1 s at 48 kHz reaches the model as about 1 s at 16 kHz (less the filter's delay).
        received = len(scripted.model.audio_in) // 2
        assert 15000 <= received <= 16000
        # The model's 24 kHz replies reach the client as 8 kHz binary frames: a third of the samples.
        sent_back = sum(len(m) for m in seen if isinstance(m, bytes)) // 2
        assert 0.3 * received <= sent_back <= 0.34 * received

    @pytest.mark.parametrize(
        ("query", "fragment"),
        [
            pytest.param("input_sample_rate=12345", "input_sample_rate='12345'", id="input-rate"),
            pytest.param("output_sample_rate=abc", "output_sample_rate='abc'", id="output-rate"),
            pytest.param("audio=opus", "audio='opus'", id="audio-encoding"),
        ],
    )
    async def test_unservable_connect_options_are_refused_naming_allowed_values(
        self, app: Starlette, query: str, fragment: str
    ) -> None:
        async with connect(app, query) as ws:
            seen, code = await expect_close(ws)
        assert code == 1008
        error = of_type(seen, "error")[0]
        assert error["fatal"] is True
        assert fragment in error["message"]
        assert "allowed values" in error["message"]


class TestErrorHandling:
    @pytest.mark.parametrize(
        ("frame", "code"),
        [
            pytest.param("not json", "invalid_json", id="not-json"),
            pytest.param("[1, 2]", "invalid_message", id="not-object"),
            pytest.param('{"type": "dance"}', "unknown_type", id="unknown-type"),
            pytest.param('{"foo": 1}', "invalid_message", id="no-type"),
            pytest.param('{"type": "audio", "audio": "%%%"}', "invalid_base64", id="bad-base64"),
            pytest.param('{"type": "audio", "audio": "AA=="}', "odd_byte_count", id="odd-bytes-base64"),
            pytest.param(b"\x00\x01\x02", "odd_byte_count", id="odd-bytes-binary"),
            pytest.param(
                '{"type": "audio", "audio": "AAAA", "sample_rate": 44100}',
                "unsupported_sample_rate",
                id="rate-mismatch",
            ),
            pytest.param(
                '{"type": "audio", "audio": "AAAA", "format": "opus"}', "unsupported_format", id="format"
            ),
            pytest.param(
                '{"type": "audio", "audio": "AAAA", "channels": 2}', "unsupported_format", id="stereo"
            ),
            pytest.param('{"type": "audio", "audio": ""}', "empty_audio", id="empty-audio"),
            pytest.param('{"type": "text", "text": "   "}', "empty_text", id="empty-text"),
            pytest.param('{"type": "text", "text": 5}', "invalid_message", id="text-not-string"),
        ],
    )
    async def test_bad_frame_gets_error_and_session_goes_on(
        self, app: Starlette, scripted: ScriptedProvider, frame: str | bytes, code: str
    ) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"before"}')
            await receive_until(ws, "response_complete")
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_text(frame)
            error = await receive_json(ws)
            assert error["type"] == "error"
            assert error["code"] == code
            assert error["fatal"] is False
            assert error["message"]
            await ws.send_text('{"type":"text","text":"after"}')
            seen = await receive_until(ws, "transcript", final=True)
        assert seen[-1]["text"] == "You said: after"
        assert scripted.model.texts == ["before", "after"]

    async def test_oversized_frame_is_fatal_with_1009(
        self, app_factory: Callable[..., Starlette], scripted: ScriptedProvider
    ) -> None:
        app = app_factory(scripted, max_message_bytes=4096)
        async with connect(app) as ws:
            await start(ws)
            await ws.send_bytes(tone(320))  # accepted: 640 bytes
            await ws.send_bytes(tone(4096))  # 8192 bytes
            seen, code = await expect_close(ws)
        assert code == 1009
        assert of_type(seen, "error")[-1]["code"] == "message_too_large"
        assert of_type(seen, "error")[-1]["fatal"] is True
        assert len(scripted.model.audio_in) == 640

    async def test_audio_behind_a_slow_send_keeps_its_order_and_the_reader_keeps_reading(
        self, app_factory: Callable[..., Starlette], scripted: ScriptedProvider
    ) -> None:
        # The first frame's send suspends (app/feed.py: it goes on as a task of its own);
        # the frames after it queue behind it, and meanwhile the reader still answers a ping.
        app = app_factory(scripted, audio_queue_size=8)
        async with connect(app) as ws:
            await start(ws)
            scripted.model.hold_audio = asyncio.Event()
            frames = [tone(320, value) for value in range(1, 6)]
            for frame in frames:
                await ws.send_bytes(frame)
            with anyio.fail_after(2):
                await scripted.model.audio_held.wait()
            await ws.send_text('{"type":"ping"}')
            await receive_until(ws, "pong")
            assert scripted.model.audio_in == b""  # nothing overtook the held frame
            scripted.model.hold_audio.set()
            with anyio.fail_after(2):
                while len(scripted.model.audio_in) < 5 * 640:
                    await receive_json(ws)
        assert scripted.model.audio_in == b"".join(frames)
        await wait_closed(app)
        await assert_no_session_tasks()

    async def test_stalled_model_ends_session_with_1013(
        self, app_factory: Callable[..., Starlette], scripted: ScriptedProvider
    ) -> None:
        app = app_factory(scripted, audio_queue_size=2, input_stall_timeout=0.2)
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"hang"}')
            await receive_until(ws, "response_complete")
            for _ in range(6):  # 1 taken by the stuck model, 2 queued, then the reader waits
                await ws.send_bytes(tone(320))
            seen, code = await expect_close(ws)
        assert code == 1013
        error = of_type(seen, "error")[0]
        assert (error["code"], error["fatal"]) == ("input_stalled", True)
        await wait_closed(app)
        await assert_no_session_tasks()

    async def test_model_error_reaches_client_before_close_1011(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"fail"}')
            seen, code = await expect_close(ws)
        assert code == 1011
        kinds = [m["type"] for m in seen]
        assert kinds[-2:] == ["error", "connection_close"]
        error = seen[-2]
        assert error["code"] == "model_error"
        assert error["fatal"] is True
        assert "scripted model failure" in error["message"]
        await wait_closed(app)
        assert scripted.model.stopped.is_set()

    async def test_model_that_cannot_start_is_reported(self, app_factory: Callable[..., Starlette]) -> None:
        class Failing(ScriptedProvider):
            def build(self) -> Any:
                model = super().build()

                async def refuse(*args: Any, **kwargs: Any) -> None:
                    raise ValueError("no AWS credentials found")

                model.start = refuse  # type: ignore[method-assign]
                return model

        failing = Failing()
        app = app_factory(failing)
        async with connect(app) as ws:
            assert (await receive_json(ws))["type"] == "session_start"
            seen, code = await expect_close(ws)
        assert code == 1011
        assert "no AWS credentials" in of_type(seen, "error")[0]["message"]
        assert failing.model.stopped.is_set()

    async def test_a_live_sessions_tasks_are_found_by_name_and_strands_by_code(self, app: Starlette) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"stream"}')
            await receive_until(ws, "audio")
            names = {task.get_name() for task in session_tasks()}
        own = {"session:audio-pump", "session:text-pump", "session:relay", "scripted-model:stream"}
        assert own <= names
        assert any(not name.startswith(SESSION_TASK_PREFIXES) for name in names), "no strands task"
        await wait_closed(app)
        await assert_no_session_tasks()

    @pytest.mark.parametrize("close_code", [1000, 1001, 4000])
    async def test_disconnect_stops_agent_and_model_with_no_leaked_tasks(
        self, app: Starlette, scripted: ScriptedProvider, close_code: int
    ) -> None:
        assert not session_tasks()
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"hi"}')
            await receive_until(ws, "response_complete")
            assert session_tasks(), "a live session's tasks are not recognised"
            await send_close(ws, close_code)
        with anyio.fail_after(1.0):
            await scripted.model.stopped.wait()
        await wait_closed(app)
        await assert_no_session_tasks()

    async def test_disconnect_mid_response_stops_within_a_second(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"stream"}')
            seen = await receive_until(ws, "audio")
            for _ in range(20):  # the reply is still streaming
                await ws.receive(timeout=2)
        assert of_type(seen, "response_start")
        with anyio.fail_after(1.0):
            await scripted.model.stopped.wait()
            await wait_closed(app)
        await assert_no_session_tasks()

    async def test_every_session_log_line_carries_the_session_id(
        self, app: Starlette, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        async with connect(app) as ws:
            session_id = (await start(ws))["session_id"]
            await ws.send_text('{"type":"text","text":"fail"}')
            await expect_close(ws)
        await wait_closed(app)
        ours = [r for r in caplog.records if r.name.startswith(("app.", "strands."))]
        assert any("session started" in r.getMessage() for r in ours)
        assert any("model failed" in r.getMessage() for r in ours)
        assert {getattr(r, "session_id", None) for r in ours} == {session_id}


class TestToolUsageFlows:
    async def test_calculator_end_to_end(self, app: Starlette, scripted: ScriptedProvider) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"calculate 12*7"}')
            seen = await receive_until(ws, "transcript", final=True, role="assistant")
            rest = await receive_until(ws, "response_complete")
        tool_use = of_type(seen, "tool_use")[0]
        assert tool_use["name"] == "calculator"
        assert tool_use["input"] == {"expression": "12*7"}
        result = of_type(seen, "tool_result")[0]
        assert result == {
            "type": "tool_result",
            "tool_use_id": tool_use["tool_use_id"],
            "name": "calculator",
            "status": "success",
            "content": "84",
        }
        assert seen[-1]["text"] == "The answer is 84."
        assert of_type(rest, "audio")
        assert scripted.model.tool_results[0].content == [{"text": "84"}]

    async def test_tool_error_is_reported_and_session_continues(
        self, app: Starlette, scripted: ScriptedProvider
    ) -> None:
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text('{"type":"text","text":"calculate 1/0"}')
            seen = await receive_until(ws, "tool_result")
            await ws.send_text('{"type":"text","text":"still here"}')
            later = await receive_until(ws, "transcript", final=True, text="You said: still here")
        result = seen[-1]
        assert result["status"] == "error"
        assert "division by zero" in result["content"]
        assert later[-1]["text"] == "You said: still here"


class TestHistory:
    async def test_history_stays_bounded_over_a_long_conversation(
        self, settings_factory: Callable[..., Any], shipped_tools: list[Any], scripted: ScriptedProvider
    ) -> None:
        @tool(context=True)
        def history_size(tool_context: ToolContext) -> str:
            """How many messages the agent holds."""
            return str(len(tool_context.agent.messages))

        app = create_app(
            settings_factory(max_history_messages=12),
            provider=scripted.provider(),
            tools=[*shipped_tools, history_size],
        )
        try:
            async with connect(app) as ws:
                await start(ws)
                for turn in range(25):
                    text = "calculate 2+2" if turn % 5 == 0 else f"turn {turn}"
                    await ws.send_text(json.dumps({"text": text}))
                    await receive_until(ws, "transcript", final=True, role="assistant")
                await ws.send_text(json.dumps({"text": "use history_size {}"}))
                seen = await receive_until(ws, "tool_result")
        finally:
            await app.state.context.services.aclose()
        assert int(seen[-1]["content"]) <= 12 + 4  # the limit, plus the tool exchange in flight
        assert len(scripted.model.texts) == 26
