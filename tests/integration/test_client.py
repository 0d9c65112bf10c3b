"""`python -m app.client` against a real server on a free loopback port."""

from __future__ import annotations

import json
import sys
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret

from tests.speech import silence, speech
from tests.support import ROOT, ScriptedProvider, free_port, run_server

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def client(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    result = await anyio.run_process(
        [sys.executable, "-m", "app.client", *args], input=stdin, check=False, cwd=ROOT
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.fixture
async def local_url(app_factory: Callable[..., Starlette]) -> AsyncIterator[str]:
    app = app_factory(None, model_provider="local", local_audio_lead_ms=10000)
    async with run_server(app) as (_, port):
        yield f"ws://127.0.0.1:{port}/ws"


async def test_text_prints_tool_events_and_the_answer(local_url: str) -> None:
    code, out, err = await client(local_url, "--text", "what is 12 times 7")
    assert code == 0, err
    assert '[tool] calculator {"expression": "12 * 7"}' in out
    assert "[tool] calculator -> success: 84" in out
    assert "assistant: 12 times 7 is 84." in out


async def test_wav_is_streamed_and_the_spoken_answer_saved(local_url: str, tmp_path: Path) -> None:
    question, answer = tmp_path / "question.wav", tmp_path / "answer.wav"
    rate = 22050  # not the server's rate: the client asks the server to resample
    with wave.open(str(question), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(silence(0.3, rate) + await speech("what time is it in tokyo", rate))
    code, out, err = await client(local_url, "--wav", str(question), "--save", str(answer))
    assert code == 0, err
    assert "user: what time is it in tokyo" in out
    assert "[tool] current_time" in out
    assert "assistant: It is" in out
    with wave.open(str(answer), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        assert wav.getnframes() / 24000 >= 0.5


async def test_json_prints_raw_protocol_events(app_factory: Callable[..., Starlette]) -> None:
    app = app_factory(None, model_provider="echo")
    async with run_server(app) as (_, port):
        code, out, err = await client(f"ws://127.0.0.1:{port}/ws", "--json", "--text", "hello json")
    assert code == 0, err
    events: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "session_start"
    assert events[0]["audio_encoding"] == "binary"
    assert {"type": "transcript", "role": "assistant", "text": "hello json", "final": True}.items() <= (
        [e for e in events if e["type"] == "transcript"][-1].items()
    )
    assert events[-1] == {"type": "connection_close", "reason": "client_end"}


async def test_interactive_chat_reads_lines(local_url: str) -> None:
    code, out, err = await client(local_url, stdin=b"what is 2 plus 2\n/quit\n")
    assert code == 0, err
    assert "assistant: 2 plus 2 is 4." in out


async def test_token_and_headers_are_sent(app_factory: Callable[..., Starlette]) -> None:
    app = app_factory(None, model_provider="echo")
    seen: list[dict[bytes, bytes]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            seen.append(dict(scope["headers"]))
        await app(scope, receive, send)

    async with run_server(recording) as (_, port):
        code, _, err = await client(
            f"ws://127.0.0.1:{port}/ws", "--token", "s3cret", "--header", "X-Tenant: acme", "--text", "hi"
        )
    assert code == 0, err
    assert seen[0][b"authorization"] == b"Bearer s3cret"
    assert seen[0][b"x-tenant"] == b"acme"


async def test_query_parameters_in_the_url_reach_the_server_unchanged(
    app_factory: Callable[..., Starlette],
) -> None:
    app = app_factory(None, model_provider="echo")
    seen: list[dict[str, list[str]]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            seen.append(parse_qs(scope["query_string"].decode(), keep_blank_values=True))
        await app(scope, receive, send)

    async with run_server(recording) as (_, port):
        url = f"ws://127.0.0.1:{port}/ws?token=a%2Fb%26c&empty=&tenant=acme+corp"
        code, _, err = await client(url, "--text", "hi")
    assert code == 0, err
    assert seen[0] == {"token": ["a/b&c"], "empty": [""], "tenant": ["acme corp"], "audio": ["binary"]}


async def test_unreachable_server_exits_3() -> None:
    code, _, err = await client(f"ws://127.0.0.1:{free_port()}/ws", "--text", "anyone?")
    assert code == 3
    assert "cannot connect to ws://127.0.0.1:" in err


async def test_server_error_exits_1_with_the_reason(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    async with run_server(app_factory(scripted)) as (_, port):
        code, _, err = await client(f"ws://127.0.0.1:{port}/ws", "--text", "fail")
    assert code == 1
    assert "model_error" in err
    assert "scripted model failure" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:1/ws", "--text", "x"], "must start with ws:// or wss://"),
        (["--wav", "/nonexistent.wav"], "cannot read WAV"),
        (["--header", "no-colon"], "--header takes 'Name: value'"),
    ],
)
async def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    code, _, err = await client(*args)
    assert code == 2
    assert message in err


async def test_token_is_sent_and_a_refusal_is_explained(app_factory: Callable[..., Starlette]) -> None:
    key = "the-cli-key-0123456789"
    app = app_factory(None, model_provider="echo", auth_tokens=Secret(key))
    async with run_server(app) as (_, port):
        url = f"ws://127.0.0.1:{port}/ws"
        ok = await client(url, "--token", key, "--text", "with a token")
        missing = await client(url, "--text", "without one")
        wrong = await client(url, "--token", "not-the-key-0123456789", "--text", "with a wrong one")
    code, out, err = ok
    assert code == 0, err
    assert "assistant: with a token" in out
    for code, out, err in (missing, wrong):
        assert code == 4
        assert out == ""
        assert "refused the connection: HTTP 401 unauthorized:" in err
        assert "(pass a valid token with --token)" in err
        assert "Traceback" not in err
