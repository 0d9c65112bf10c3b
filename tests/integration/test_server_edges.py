"""`python -m app` as it runs in production, at LOG_LEVEL=DEBUG, against hostile clients.

One server process for the module; its whole log (stderr and stdout, where uvicorn's
access lines go) is captured and grepped: no secret, no user text, no audio, no ERROR
and no traceback, whatever the clients send.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.support import ROOT, connect_ws, expect_close, free_port, receive_until, start, stop

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MAX_MESSAGE_BYTES = 32_768
SECRETS = ("SECRET1", "SECRET2", "SECRET3", "SECRET4")
MARKER = "ZEBRAMARKER"
AUDIO = bytes(range(256)) * 8  # 2048 bytes of PCM16 a log would show as distinctive base64
LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{60,}={0,2}")


class ServerLog:
    """Lines of a process's output, read by a thread so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def text(self, since: int = 0) -> str:
        with self._changed:
            return "".join(self.lines[since:])

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def wait_for_blocking(self, needle: str, timeout: float) -> str:
        def found() -> str | None:
            return next((line for line in self.lines if needle in line), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._ended, timeout)
            line = found()
        assert line is not None, f"{needle!r} not logged; log so far:\n{self.text()}"
        return line

    async def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        return await anyio.to_thread.run_sync(self.wait_for_blocking, needle, timeout)

    def join(self) -> None:
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, ServerLog]]:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MODEL_PROVIDER": "echo",
        "LOG_LEVEL": "DEBUG",
        "MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = ServerLog(process)
    try:
        log.wait_for_blocking("Uvicorn running on", 60)  # logged once the socket listens
        yield port, log
    finally:
        stop(process)
        log.join()
        if process.stdout is not None:
            process.stdout.close()


async def raw_start(ws: ClientConnection) -> str:
    """With the `websockets` client (raw bytes as a text frame, compression): read
    session_start and connection_start; return the session id."""
    with anyio.fail_after(10):
        session_start = json.loads(await ws.recv())
        assert json.loads(await ws.recv())["type"] == "connection_start"
    session_id: str = session_start["session_id"]
    return session_id


async def closed_by_server(ws: ClientConnection) -> tuple[list[Any], ConnectionClosed]:
    """Everything received until the server closes, and how it closed."""
    seen: list[Any] = []
    with anyio.fail_after(10):
        try:
            while True:
                seen.append(await ws.recv())
        except ConnectionClosed as closed:
            return seen, closed


def assert_no_error_logged(log: ServerLog, since: int) -> None:
    text = log.text(since)
    assert " ERROR " not in text, text
    assert "Traceback" not in text, text


def url(port: int, query: str = "") -> str:
    return f"ws://127.0.0.1:{port}/ws" + (f"?{query}" if query else "")


async def test_debug_log_has_no_secrets_text_or_audio(server: tuple[int, ServerLog]) -> None:
    port, log = server
    since = log.mark()
    async with httpx.AsyncClient() as client:
        health = await client.get(f"http://127.0.0.1:{port}/health?api_key=SECRET4")
        assert health.status_code == 200
        async with connect_ws(
            url(port, "token=SECRET1&api_key=SECRET2&input_sample_rate=16000"),
            client,
            headers={"Authorization": "Bearer SECRET3"},
        ) as ws:
            session_id = (await start(ws))["session_id"]
            await ws.send_text(json.dumps({"type": "text", "text": f"say {MARKER} please"}))
            seen = await receive_until(ws, "transcript", final=True)
            assert MARKER in seen[-1]["text"]
            await ws.send_text(json.dumps({"type": "audio", "audio": base64.b64encode(AUDIO).decode()}))
            await receive_until(ws, "audio")
            await ws.send_bytes(AUDIO)
            await receive_until(ws, "audio")
            await ws.send_text(json.dumps({"type": "end"}))
            _, code = await expect_close(ws)
    assert code == 1000
    await log.wait_for(f"[session={session_id}] session closed: reason=client_end")
    text = log.text()
    for secret in SECRETS:
        assert secret not in text, secret
    assert MARKER not in text
    assert base64.b64encode(AUDIO).decode()[:24] not in text
    assert not LONG_BASE64.search(text), LONG_BASE64.search(text)
    # and the useful lines are still there
    assert "/health?api_key=[redacted] HTTP/1.1" in text
    assert '"WebSocket /ws?token=[redacted]&api_key=[redacted]&input_sample_rate=16000" [accepted]' in text
    assert f"[session={session_id}] session started: provider=echo model=echo" in text
    assert_no_error_logged(log, since)


@pytest.mark.parametrize(
    ("compression", "reason"),
    [
        # refused from the frame header, before the payload is read
        pytest.param(None, "frame with 32828 bytes exceeds limit of 32768 bytes", id="plain"),
        # a compressed frame is inflated no further than the limit
        pytest.param("deflate", "frame exceeds limit of 32768 bytes", id="permessage-deflate"),
    ],
)
async def test_frame_over_max_message_bytes_is_refused_by_the_websocket_layer(
    server: tuple[int, ServerLog], compression: str | None, reason: str
) -> None:
    port, log = server
    since = log.mark()
    frame = json.dumps({"type": "text", "text": "\U0001f600" * 8_200}, ensure_ascii=False)
    assert len(frame) < MAX_MESSAGE_BYTES < len(frame.encode()) == 32_828  # over in bytes only
    async with ws_connect(url(port), proxy=None, compression=compression) as ws:
        session_id = await raw_start(ws)
        await ws.send(frame)
        seen, closed = await closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009
    # uvicorn's WebSocket layer refused it: the app never saw it, so no `error` precedes
    # the close (the app's own check would have sent one); the close reason says why.
    assert closed.rcvd.reason == reason
    assert seen == []
    await log.wait_for(f"[session={session_id}] session closed: reason=message_too_large code=1009")
    assert_no_error_logged(log, since)


async def test_invalid_utf8_text_frame_closes_1007_without_an_error_log(
    server: tuple[int, ServerLog],
) -> None:
    port, log = server
    since = log.mark()
    async with ws_connect(url(port), proxy=None) as ws:
        session_id = await raw_start(ws)
        await ws.send(b'{"type":"text","text":"\xff\xfe"}', text=True)  # a text frame, not UTF-8
        seen, closed = await closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1007
    assert seen == []
    await log.wait_for(f"[session={session_id}] session closed: reason=invalid_utf8 code=1007")
    assert "the client sent a text frame that is not UTF-8" in log.text(since)
    assert_no_error_logged(log, since)


async def test_hostile_json_gets_coded_errors_from_the_real_server(server: tuple[int, ServerLog]) -> None:
    port, log = server
    since = log.mark()
    async with httpx.AsyncClient() as client, connect_ws(url(port), client) as ws:
        session_id = (await start(ws))["session_id"]
        for frame, code in (("[" * 10_000, "invalid_json"), ('{"text":"\\ud800"}', "invalid_text")):
            await ws.send_text(frame)
            error = (await receive_until(ws, "error"))[-1]
            assert (error["code"], error["fatal"]) == (code, False)
        await ws.send_text(json.dumps({"type": "text", "text": "still here"}))
        seen = await receive_until(ws, "transcript", final=True)
        assert seen[-1]["text"] == "still here"
    await log.wait_for(f"[session={session_id}] session closed")
    assert_no_error_logged(log, since)
