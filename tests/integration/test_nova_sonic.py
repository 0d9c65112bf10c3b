"""`MODEL_PROVIDER=nova_sonic` end to end: our WebSocket, the real BidiAgent, strands'
`BedrockNovaSonicModel`, smithy's SigV4 and event-stream signing and awscrt's HTTP/2 over
TLS, against a fake Bedrock endpoint on loopback (tests/fake_bedrock.py).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from starlette.applications import Starlette

from tests.fake_bedrock import FakeBedrock, make_certificates
from tests.support import (
    assert_no_session_tasks,
    connect,
    connect_ws,
    expect_close,
    of_type,
    receive_until,
    run_server,
    scrape,
    start,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MODEL_ID = "amazon.nova-2-5-sonic"


def sine(seconds: float, rate: int, amplitude: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * amplitude).astype("<i2").tobytes()


def silence(seconds: float, rate: int) -> bytes:
    return bytes(int(seconds * rate) * 2)


def frames(pcm: bytes, rate: int, ms: int = 20) -> list[bytes]:
    size = rate * ms // 1000 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def samples(audio: list[dict[str, Any]]) -> int:
    return sum(len(base64.b64decode(a["audio"])) for a in audio) // 2


@pytest.fixture
async def bedrock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBedrock]:
    certificates = make_certificates(tmp_path)
    # awscrt trusts the system store; SSL_CERT_FILE points it at the throwaway CA instead.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    fake = FakeBedrock(certificates)
    async with fake.serve():
        yield fake


@pytest.fixture
def nova_app(app_factory: Callable[..., Starlette], bedrock: FakeBedrock) -> Callable[..., Starlette]:
    def make(**overrides: Any) -> Starlette:
        return app_factory(None, model_provider="nova_sonic", bedrock_endpoint_url=bedrock.url, **overrides)

    return make


async def test_a_text_turn_is_answered_with_transcript_audio_and_usage(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    app = nova_app(voice="tiffany")
    async with connect(app, "output_sample_rate=48000") as ws:
        info = await start(ws)
        assert (info["provider"], info["model"], info["output_sample_rate"]) == (
            "nova_sonic",
            MODEL_ID,
            48000,
        )
        await ws.send_text(json.dumps({"type": "text", "text": "hello there"}))
        seen = await receive_until(ws, "response_complete", timeout=10)
        seen += await receive_until(ws, "usage")
    assert of_type(seen, "transcript")[-1] == {
        **of_type(seen, "transcript")[-1],
        "role": "assistant",
        "text": "You said: hello there",
        "final": True,
    }
    audio = of_type(seen, "audio")
    assert {a["sample_rate"] for a in audio} == {48000}
    # Nova spoke 0.5 s at its 24 kHz; the client gets it at 48 kHz, not relabelled.
    assert 23_000 <= samples(audio) <= 24_100
    assert of_type(seen, "usage")[0] == {
        "type": "usage",
        "input_tokens": 8,
        "output_tokens": 18,
        "total_tokens": 26,
    }
    await wait_closed(app)

    # What reached "Bedrock": a SigV4-signed request for the model, signed event chunks,
    # and the session's prompt, voice, rates and tools.
    (stream,) = bedrock.streams
    assert stream.path.startswith(f"/model/{MODEL_ID}/invoke-with-bidirectional-stream")
    authorization = stream.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDFAKEFAKEFAKE/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert stream.reader.signed > 5
    assert stream.reader.ended  # the client ended its input stream when the session closed
    nova = stream.nova
    assert nova.prompt["audioOutputConfiguration"]["sampleRateHertz"] == 24000
    assert nova.prompt["audioOutputConfiguration"]["voiceId"] == "tiffany"
    tools = {t["toolSpec"]["name"] for t in nova.prompt["toolConfiguration"]["tools"]}
    assert {"calculator", "current_time", "weather"} <= tools
    assert nova.history[0][0] == "SYSTEM"
    kinds = [next(iter(event)) for event in nova.received]
    assert kinds[:2] == ["sessionStart", "promptStart"]
    assert kinds[-2:] == ["promptEnd", "connectionEnd"]


async def test_a_spoken_turn_reaches_the_model_at_its_rate(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    rate = 48000
    async with connect(nova_app(), f"input_sample_rate={rate}&audio=binary") as ws:
        await start(ws)
        for frame in frames(silence(0.2, rate) + sine(1.0, rate) + silence(0.6, rate), rate):
            await ws.send_bytes(frame)
        seen = await receive_until(ws, "transcript", role="user", final=True, timeout=10)
        seen += await receive_until(ws, "response_complete", timeout=10)
        await ws.send_text(json.dumps({"type": "end"}))  # everything sent reaches the model first
        await expect_close(ws)
    heard = of_type(seen, "transcript")[0]["text"]
    match = re.fullmatch(r"\[(\d+) ms of speech at (\d+) Hz\]", heard)
    assert match, heard
    assert int(match[2]) == 16000
    assert abs(int(match[1]) - 1000) <= 40
    assert of_type(seen, "transcript")[-1]["text"] == "I heard you."
    assert [f for f in seen if isinstance(f, bytes)], "binary audio back"
    nova = bedrock.novas[0]
    assert nova.input_rate == 16000
    # 1.8 s of audio at 48 kHz arrives as 1.8 s at 16 kHz (resampled, not relabelled),
    # less the resampler's delay (about 26 ms).
    assert 1.8 * 16000 - 500 <= nova.audio_samples <= 1.8 * 16000


async def test_a_tool_round_trip_runs_our_tool_and_speaks_the_answer(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    async with connect(nova_app()) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "what is 6 times 7"}))
        seen = await receive_until(ws, "transcript", role="assistant", final=True, timeout=10)
    (use,) = of_type(seen, "tool_use")
    assert (use["name"], use["input"]) == ("calculator", {"expression": "6*7"})
    (result,) = of_type(seen, "tool_result")
    assert (result["tool_use_id"], result["status"], result["content"]) == (
        use["tool_use_id"],
        "success",
        "42",
    )
    assert seen[-1]["text"] == "The answer is 42."
    assert of_type(seen, "audio")
    (tool_result,) = bedrock.novas[0].tool_results
    assert json.loads(tool_result["content"]) == {"text": "42"}


async def test_barge_in_interrupts_the_reply_and_the_session_goes_on(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    async with connect(nova_app()) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "tell me a long story"}))
        await receive_until(ws, "audio", timeout=10)
        for frame in frames(sine(0.2, 16000), 16000):  # the user talks over the reply
            await ws.send_bytes(frame)
        after = await receive_until(ws, "interruption", timeout=10)
        after = await receive_until(ws, "response_complete", timeout=10)
        assert not of_type(after, "audio"), "no audio of the story after the interruption"
        await ws.send_text(json.dumps({"type": "text", "text": "are you still there"}))
        seen = await receive_until(ws, "transcript", role="assistant", final=True, timeout=10)
    assert seen[-1]["text"] == "You said: are you still there"
    assert bedrock.novas[0].interrupted
    assert len(bedrock.streams) == 1


async def test_a_model_timeout_restarts_the_connection_and_the_next_turn_is_answered(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    app = nova_app()
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "hello"}))
        await receive_until(ws, "response_complete", timeout=10)
        await ws.send_text(json.dumps({"type": "text", "text": "time out"}))
        restart = (await receive_until(ws, "connection_restart", timeout=10))[-1]
        await receive_until(ws, "connection_start", timeout=10)
        await ws.send_text(json.dumps({"type": "text", "text": "are you back"}))
        seen = await receive_until(ws, "transcript", role="assistant", final=True, timeout=10)
        metrics = await scrape(app)
    assert restart["reason"] == "timeout"
    assert seen[-1]["text"] == "You said: are you back"
    assert metrics("voice_model_restarts_total", reason="timeout", result="ok") == 1
    first, second = bedrock.novas
    # strands replayed the conversation into the new connection, as history.
    assert ("USER", "hello") in second.history
    assert ("ASSISTANT", "You said: hello") in second.history
    assert not first.history[1:]  # the first connection had only the system prompt


async def test_a_model_that_keeps_timing_out_ends_the_session_after_the_restart_limit(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    bedrock.time_out_every_connection = True
    app = nova_app(model_max_restarts=2)
    async with connect(app) as ws:
        await receive_until(ws, "session_start")
        seen, code = await expect_close(ws, timeout=20)
    assert code == 1013
    assert len(of_type(seen, "connection_restart")) == 3  # two restarts, then the refused third
    (error,) = of_type(seen, "error")
    assert (error["code"], error["fatal"]) == ("model_restart_limit", True)
    assert seen[-1] == {"type": "connection_close", "reason": "model_restart_limit"}
    assert len(bedrock.streams) == 3  # the first connection and two restarts, no more
    await wait_closed(app)
    metrics = await scrape(app)
    assert metrics("voice_model_restarts_total", reason="timeout", result="ok") == 2  # not the refused one
    assert metrics("voice_sessions_ended_total", reason="model_restart_limit") == 1


async def test_a_fatal_model_error_closes_1011_and_the_server_stays_healthy(
    nova_app: Callable[..., Starlette], bedrock: FakeBedrock
) -> None:
    app = nova_app()
    async with run_server(app) as (_, port), httpx.AsyncClient() as client:
        async with connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"type": "text", "text": "fail"}))
            seen, code = await expect_close(ws, timeout=10)
        assert code == 1011
        (error,) = of_type(seen, "error")
        assert error["code"] == "model_error"
        assert "internalServerException" in error["message"] or "unexpected error" in error["message"]
        await wait_closed(app)
        health = await client.get(f"http://127.0.0.1:{port}/health")
        assert health.json()["status"] == "ok"
        assert health.json()["sessions"] == 0
        async with connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"type": "text", "text": "still there?"}))
            seen = await receive_until(ws, "transcript", role="assistant", final=True, timeout=10)
        assert seen[-1]["text"] == "You said: still there?"


async def test_many_sessions_at_once(nova_app: Callable[..., Starlette], bedrock: FakeBedrock) -> None:
    app = nova_app()
    count = 12
    answers: dict[int, str] = {}
    async with run_server(app) as (_, port), httpx.AsyncClient() as client:

        async def converse(number: int) -> None:
            async with connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
                await start(ws)
                await ws.send_text(json.dumps({"type": "text", "text": f"I am caller {number}"}))
                seen = await receive_until(ws, "transcript", role="assistant", final=True, timeout=20)
                answers[number] = seen[-1]["text"]

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                for number in range(count):
                    tasks.start_soon(converse, number)
        await wait_closed(app)
    assert answers == {n: f"You said: I am caller {n}" for n in range(count)}
    assert len(bedrock.streams) == count
    texts = sorted(e["textInput"]["content"] for n in bedrock.novas for e in n.received if "textInput" in e)
    assert [t for t in texts if t.startswith("I am caller")] == sorted(
        f"I am caller {n}" for n in range(count)
    )
    await assert_no_session_tasks()
