"""Shared test helpers; test modules import these and never one another (tests/unit/test_layout.py).

Sections, in order:
- paths: the checkout, the shipped tools folder, loading one tool module;
- the scripted model: `ScriptedModel`, a real BidiModel subclass driven through the real
  `BidiAgent` loop, and `ScriptedProvider`, which builds it for an app:
  - text "calculate EXPR" asks for the calculator tool, then says the result aloud;
  - text "use NAME {json}" asks for any tool with that input;
  - text "fail" makes receive() raise (a model failure);
  - text "hang" answers, then never takes audio again (a stalled model);
  - text "stream" starts a reply that keeps producing audio until stopped;
  - any other text is answered with "You said: TEXT" (transcript and audio);
  - audio is recorded and answered with a user transcript and the same audio;
  - `hold_stop`, when a test sets it, is an event stop() waits for (a slow model stop);
  - `hold_audio`, when a test sets it, is an event each audio send waits for (a model
    slow to take input), and `audio_held` is set once one waits;
- WebSocket conversations: connecting (in-process or to a port), reading messages,
  streaming audio at a given speed or for as long as the test wants;
- clients that stop reading: `non_reader`, a raw socket with a tiny receive buffer;
- session ends: waiting for sessions to close, finding a session's tasks;
- fakes of outside services: OpenWeatherMap, and a clock the test sets;
- metrics: scraping `/metrics` from an app in-process or from a server;
- real servers: uvicorn on a free loopback port, `python -m app` as a subprocess (its
  log collected, its exit awaited), and what a server holds (its WebSocket connections,
  a process's open file descriptors).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Final

import anyio
import httpx
import strands
import uvicorn
import wsproto.events
import wsproto.utilities
from anyio.abc import SocketStream
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketNetworkError, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.types import ASGIApp
from strands.bidi.models import BidiModel
from strands.bidi.types import AudioDelta, BidiContentDelta, BidiMessage
from strands.bidi.types.events import (
    BidiAudioDeltaEvent,
    BidiAudioStartEvent,
    BidiAudioStopEvent,
    BidiConnectionStartEvent,
    BidiOutputEvent,
    BidiResponseStartEvent,
    BidiResponseStopEvent,
    BidiToolUseBlocksEvent,
    BidiTranscriptDeltaEvent,
    BidiTranscriptStartEvent,
    BidiTranscriptStopEvent,
)
from strands.types.content import TextBlock
from strands.types.tools import ToolResultBlock, ToolUse
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from app.models import ModelProvider

# paths ---------------------------------------------------------------------------

ROOT: Final = Path(__file__).resolve().parent.parent
TOOLS_DIR: Final = ROOT / "tools"


def load_tool_module(name: str) -> ModuleType:
    """The shipped tool module `tools/NAME.py`, imported on its own (not as a plugin)."""
    spec = importlib.util.spec_from_file_location(f"test_tools_{name}", TOOLS_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so a worker process can load it by the same name
    spec.loader.exec_module(module)
    return module


# the scripted model ---------------------------------------------------------------

_STOP = object()


def tone(samples: int, value: int = 1000) -> bytes:
    """A constant PCM16 signal (a square-ish test tone is not needed; level is enough)."""
    return value.to_bytes(2, "little", signed=True) * samples


class ScriptedModel(BidiModel):
    def __init__(self, input_rate: int = 16000, output_rate: int = 16000) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.audio_in = bytearray()
        self.texts: list[str] = []
        self.tool_results: list[ToolResultBlock] = []
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.stop_calls = 0
        self.hang = False
        self.hold_stop: asyncio.Event | None = None
        self.hold_audio: asyncio.Event | None = None
        self.audio_held = asyncio.Event()
        self._queue: asyncio.Queue[Any] | None = None
        self._streamer: asyncio.Task[None] | None = None

    def get_config(self) -> dict[str, Any]:
        return {"model_id": "scripted"}

    def update_config(self, **kwargs: Any) -> None:
        pass

    def get_audio_config(self) -> Any:
        pcm = {"channels": 1, "format": "pcm"}
        return {
            "input": {"sample_rate": self.input_rate, **pcm},
            "output": {"sample_rate": self.output_rate, **pcm},
        }

    async def start(
        self, system_prompt: Any = None, tools: Any = None, messages: Any = None, **kw: Any
    ) -> None:
        self._queue = asyncio.Queue()
        self.started.set()

    async def stop(self) -> None:
        self.stop_calls += 1
        if self.hold_stop is not None:
            await self.hold_stop.wait()
        if self._streamer is not None:
            self._streamer.cancel()
        if self._queue is not None:
            self._queue.put_nowait(_STOP)
        self.stopped.set()

    def fail(self) -> None:
        """Fail on its own, as a provider connection drops: nothing from the client needed."""
        assert self._queue is not None
        self._queue.put_nowait(RuntimeError("scripted model failure"))

    async def receive(self) -> AsyncGenerator[BidiOutputEvent, None]:
        assert self._queue is not None
        yield BidiConnectionStartEvent("conn-1", "scripted")
        while (item := await self._queue.get()) is not _STOP:
            if isinstance(item, Exception):
                raise item
            yield item

    async def send(self, content: BidiMessage | BidiContentDelta) -> None:
        assert self._queue is not None
        if isinstance(content, AudioDelta):
            if self.hang:
                await asyncio.Event().wait()  # never takes this audio; cancelled at stop
            if self.hold_audio is not None and not self.hold_audio.is_set():
                self.audio_held.set()
                await self.hold_audio.wait()
            pcm = content.source["bytes"]
            self.audio_in += pcm
            self._say(None, pcm, transcript_role="user", transcript=f"{len(pcm)} bytes")
            return
        first = content.content[0]
        if isinstance(first, ToolResultBlock):
            self.tool_results.append(first)
            text = first.content[0].get("text", "")
            self._say(f"The answer is {text}.", tone(1600))
            return
        text = " ".join(b.text for b in content.content if isinstance(b, TextBlock))
        self.texts.append(text)
        if text == "hang":
            self.hang = True
            self._say("hanging", b"")
        elif text == "fail":
            self.fail()
        elif text == "stream":
            self._streamer = asyncio.create_task(self._stream(), name="scripted-model:stream")
        elif text.startswith(("calculate ", "use ")):
            rid = uuid.uuid4().hex
            if text.startswith("calculate "):
                name, tool_input = "calculator", {"expression": text[10:]}
            else:
                name, _, raw = text[4:].partition(" ")
                tool_input = json.loads(raw)
            tool_use: ToolUse = {"toolUseId": f"t-{rid[:8]}", "name": name, "input": tool_input}
            self._queue.put_nowait(BidiResponseStartEvent(rid))
            self._queue.put_nowait(BidiToolUseBlocksEvent([tool_use]))
            self._queue.put_nowait(BidiResponseStopEvent(rid))
        else:
            self._say(f"You said: {text}", tone(1600))

    def _say(
        self, text: str | None, pcm: bytes, transcript_role: str = "assistant", transcript: str = ""
    ) -> None:
        assert self._queue is not None
        q, rid, cid = self._queue, uuid.uuid4().hex, uuid.uuid4().hex
        q.put_nowait(BidiResponseStartEvent(rid))
        spoken = text if text is not None else transcript
        role: Any = "assistant" if text is not None else transcript_role
        q.put_nowait(BidiTranscriptStartEvent(role, cid))
        half = len(spoken) // 2
        q.put_nowait(BidiTranscriptDeltaEvent(spoken[:half], role, cid))
        q.put_nowait(BidiTranscriptDeltaEvent(spoken[half:], role, cid))
        q.put_nowait(BidiTranscriptStopEvent(role, cid))
        aid = uuid.uuid4().hex
        q.put_nowait(BidiAudioStartEvent(aid))
        q.put_nowait(BidiAudioDeltaEvent(base64.b64encode(pcm).decode(), "pcm", self.output_rate, 1, aid))
        q.put_nowait(BidiAudioStopEvent(aid))
        q.put_nowait(BidiResponseStopEvent(rid))

    async def _stream(self) -> None:
        assert self._queue is not None
        rid, aid = uuid.uuid4().hex, uuid.uuid4().hex
        await self._queue.put(BidiResponseStartEvent(rid))
        await self._queue.put(BidiAudioStartEvent(aid))
        chunk = base64.b64encode(tone(320)).decode()
        while True:
            await self._queue.put(BidiAudioDeltaEvent(chunk, "pcm", self.output_rate, 1, aid))
            await asyncio.sleep(0.005)


class ScriptedProvider:
    """A `ModelProvider` whose models the test can inspect afterwards."""

    def __init__(self, **model_kwargs: Any) -> None:
        self.models: list[ScriptedModel] = []
        self._kwargs = model_kwargs

    def build(self) -> BidiModel:
        model = ScriptedModel(**self._kwargs)
        self.models.append(model)
        return model

    def provider(self) -> ModelProvider:
        return ModelProvider("scripted", self.build)

    @property
    def model(self) -> ScriptedModel:
        return self.models[-1]


# WebSocket conversations ------------------------------------------------------------


# The echo model answering at the client's rate, with binary audio: no resampling, so
# what a client hears back is byte for byte what it sent (`python -m app` tests).
ECHO_AT_CLIENT_RATE: Final = {"MODEL_PROVIDER": "echo", "OUTPUT_SAMPLE_RATE": "16000"}
BINARY_16K: Final = "?audio=binary&input_sample_rate=16000&output_sample_rate=16000"
SERVER_SHUTDOWN: Final = {"type": "connection_close", "reason": "server_shutdown"}


@asynccontextmanager
async def connect(app: ASGIApp, query: str = "") -> AsyncIterator[AsyncWebSocketSession]:
    """A WebSocket to `app` (the app, or a test's wrapper around it) in-process, through
    httpx-ws's ASGI transport."""
    url = "ws://test/ws" + (f"?{query}" if query else "")
    async with (
        httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://test") as client,
        connect_ws(url, client) as ws,
    ):
        yield ws


def connect_ws(
    url: str, client: httpx.AsyncClient, **options: Any
) -> AbstractAsyncContextManager[AsyncWebSocketSession]:
    """httpx-ws's `aconnect_ws`, with its session type spelled out: mypy cannot infer the
    session-class type variable from its default."""
    return aconnect_ws(url, client, session_class=AsyncWebSocketSession, **options)


async def receive_json(ws: AsyncWebSocketSession, timeout: float = 5.0) -> dict[str, Any]:
    message = await ws.receive_text(timeout=timeout)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def start(ws: AsyncWebSocketSession) -> dict[str, Any]:
    """Read session_start and connection_start; return session_start."""
    session_start = await receive_json(ws)
    assert session_start["type"] == "session_start"
    assert (await receive_json(ws))["type"] == "connection_start"
    return session_start


async def receive_until(
    ws: AsyncWebSocketSession, kind: str, timeout: float = 5.0, **match: Any
) -> list[Any]:
    """Messages up to and including the first of `type` `kind` (and matching fields).
    Binary frames appear in the list as bytes."""
    seen: list[Any] = []
    with anyio.fail_after(timeout):
        while True:
            event = await ws.receive()
            data = getattr(event, "data", None)
            item = json.loads(data) if isinstance(data, str) else data
            seen.append(item)
            if (
                isinstance(item, dict)
                and item.get("type") == kind
                and all(item.get(k) == v for k, v in match.items())
            ):
                return seen


async def expect_close(ws: AsyncWebSocketSession, timeout: float = 5.0) -> tuple[list[Any], int]:
    """Everything the server sends until it closes, and the close code."""
    seen: list[Any] = []
    with anyio.fail_after(timeout):
        while True:
            try:
                event = await ws.receive()
            except WebSocketDisconnect as exc:
                return seen, exc.code
            data = getattr(event, "data", None)
            seen.append(json.loads(data) if isinstance(data, str) else data)


async def send_close(ws: AsyncWebSocketSession, code: int) -> None:
    """Send a close frame with `code`; leaving the `connect` block then ends the stream.
    (httpx-ws's own close() races its background reader when called inside the block.)"""
    await ws.send(wsproto.events.CloseConnection(code=code))


async def stream_audio(ws: AsyncWebSocketSession, pcm: bytes, speed: float = 1.0, rate: int = 16000) -> None:
    """`pcm` as 20 ms binary frames at `speed` times real time, on an absolute schedule.
    (The sleeps set the rate a client sends at; they wait for nothing.)"""
    size, step = rate // 50 * 2, 0.02 / speed
    begin = anyio.current_time()
    for n, offset in enumerate(range(0, len(pcm), size)):
        delay = begin + n * step - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)
        await ws.send_bytes(pcm[offset : offset + size])


async def speak_until(ws: AsyncWebSocketSession, stop: anyio.Event, rate: int = 16000) -> int:
    """Binary 20 ms audio frames at real time (on an absolute schedule) until `stop` is set
    or the server closes; the bytes sent. (The sleeps set the rate; they wait for nothing.)"""
    frame = tone(rate // 50)
    sent = n = 0
    begin = anyio.current_time()
    while True:
        delay = begin + n * 0.02 - anyio.current_time()
        if delay > 0:
            with anyio.move_on_after(delay):
                await stop.wait()
        if stop.is_set():
            return sent
        try:
            await ws.send_bytes(frame)
        except (WebSocketDisconnect, WebSocketNetworkError, wsproto.utilities.LocalProtocolError):
            return sent  # closed by the server (wsproto's error: its close came first)
        sent += len(frame)
        n += 1


def local_port(ws: AsyncWebSocketSession) -> int:
    """The client's own port of a WebSocket to a real server."""
    port: int = ws.stream.get_extra_info("client_addr")[1]
    return port


def of_type(messages: list[Any], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if isinstance(m, dict) and m.get("type") == kind]


async def ping_round_trips(ws: AsyncWebSocketSession, seconds: float) -> list[float]:
    """Round trips, in seconds, of app-level pings sent one after another for `seconds`."""
    rtts: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sent = time.monotonic()
        await ws.send_text(json.dumps({"type": "ping"}))
        await receive_until(ws, "pong")
        rtts.append(time.monotonic() - sent)
    return rtts


# clients that stop reading -----------------------------------------------------------
#
# Below any WebSocket library, which reads on its own: a plain socket whose receive
# buffer is tiny, so what the server sends backs up at once, with websockets' Sans-I/O
# client building the frames.

TINY_RECEIVE_BUFFER: Final = 4096


class NonReader:
    """A WebSocket client that read its handshake response and never reads again."""

    def __init__(self, stream: SocketStream, protocol: ClientProtocol) -> None:
        self.stream = stream
        self.protocol = protocol

    async def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        await self.stream.send(b"".join(self.protocol.data_to_send()))

    async def send_binary(self, data: bytes) -> None:
        self.protocol.send_binary(data)
        await self.stream.send(b"".join(self.protocol.data_to_send()))

    def ping_frame(self, payload: bytes = b"") -> bytes:
        """One ping frame, to send as often as wanted."""
        self.protocol.send_ping(payload)
        return b"".join(self.protocol.data_to_send())

    async def flood(self, data: bytes, seconds: float, stall: float = 0.5) -> tuple[int, str]:
        """Send `data` again and again for at most `seconds`: the bytes the server took,
        and why it ended: "stalled" (a send waited `stall` s: the server stopped reading),
        "cut" (the connection was closed) or "time"."""
        sent = 0
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            with anyio.move_on_after(stall):
                try:
                    await self.stream.send(data)
                except (anyio.BrokenResourceError, OSError):
                    return sent, "cut"
                sent += len(data)
                continue
            return sent, "stalled"
        return sent, "time"


@asynccontextmanager
async def non_reader(port: int, query: str = "") -> AsyncIterator[NonReader]:
    """A WebSocket to `/ws` on `port` whose socket buffers hold next to nothing."""
    sock = socket.socket()
    # Before connecting: the receive buffer sets the window the client offers.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_RECEIVE_BUFFER)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    async with await SocketStream.from_socket(sock) as stream:
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws" + (f"?{query}" if query else "")))
        protocol.send_request(protocol.connect())
        await stream.send(b"".join(protocol.data_to_send()))
        with anyio.fail_after(5):
            while protocol.state is State.CONNECTING:
                protocol.receive_data(await stream.receive())
        assert protocol.handshake_exc is None, protocol.handshake_exc
        yield NonReader(stream, protocol)


# session ends ---------------------------------------------------------------------


async def wait_closed(app: Starlette, timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        await app.state.context.registry.wait_idle()


# A session's own tasks are named `session:...`, the local model's `local-model:...`, the
# scripted model's `scripted-model:...`.
SESSION_TASK_PREFIXES: Final = ("session:", "local-model:", "scripted-model:")

# strands' BidiAgent starts its tasks (the model reader, tool runs, the restart timer)
# with asyncio.create_task and no name, so they are `Task-N`: found by where their
# coroutine is defined instead, only because they cannot be found by name. Compared as a
# real directory, not a substring of a path, so no other code can match by accident.
STRANDS_DIR: Final = Path(strands.__file__).resolve().parent


@functools.cache
def _is_strands_code(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(STRANDS_DIR)


def session_tasks() -> set[asyncio.Task[Any]]:
    """Tasks that belong to a session: ours, the model's, strands'."""
    found = set()
    for task in asyncio.all_tasks():
        if task.get_name().startswith(SESSION_TASK_PREFIXES):
            found.add(task)
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and _is_strands_code(code.co_filename):
            found.add(task)
    return found


async def assert_no_session_tasks(timeout: float = 2.0) -> None:
    with anyio.fail_after(timeout):
        while session_tasks():
            # A bare yield, not a timed sleep: lets cancelled tasks run to their end.
            await anyio.lowlevel.checkpoint()


# fakes of outside services -----------------------------------------------------------


class Clock:
    """A monotonic clock the test sets: `clock.now += 1.0`."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeOpenWeatherMap:
    """An httpx mock transport answering like OpenWeatherMap's current-weather API."""

    def __init__(self, description: str = "clear sky", temp: float = 21.0, humidity: int = 40) -> None:
        self.requests: list[httpx.Request] = []
        self.body = {
            "name": "Paris",
            "sys": {"country": "FR"},
            "weather": [{"description": description}],
            "main": {"temp": temp, "feels_like": temp - 1, "humidity": humidity},
            "wind": {"speed": 2.0},
        }
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.body)


# metrics ----------------------------------------------------------------------------


class Scrape:
    """One `/metrics` answer, parsed: `scrape("voice_frames_total", direction="in")` is
    that sample's value, 0.0 if the scrape has no such sample."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(target: ASGIApp | str) -> Scrape:
    """`GET /metrics` from an app, in-process, or from a server's base URL (http://host:port)."""
    if isinstance(target, str):
        client = httpx.AsyncClient(base_url=target)
    else:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(target), base_url="http://test")
    async with client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


async def scrape_until(
    target: ASGIApp | str, condition: Callable[[Scrape], bool], timeout: float = 5.0
) -> Scrape:
    """Scrape until `condition` holds, for metrics that move in the background (a flush
    every second, the event-loop probe): every 10 ms, failing after `timeout` seconds."""
    with anyio.fail_after(timeout):
        # Another process's flush signals nothing here: polled, like `poll_until`.
        while not condition(metrics := await scrape(target)):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return metrics


# real servers ---------------------------------------------------------------------
#
# `serving` stops its server gracefully however the block ends: a test that fails with a
# browser or client still connected must not leave a socket, a connection or the app's
# lifespan open behind it, because `filterwarnings = error` turns the `ResourceWarning`
# the garbage collector raises for it into a failure of whichever test runs next.

# uvicorn notices `should_exit` within 0.1 s, then waits up to the config's
# timeout_graceful_shutdown for connections; this bounds the whole stop.
STOP_DEADLINE: Final = 15.0


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn accepts: no start-up race
    return sock


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """A uvicorn server for `config` for the duration of the block, and its port."""
    server = uvicorn.Server(config)
    stopped = anyio.Event()

    async def serve(sock: socket.socket) -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    with listening_socket() as sock:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve, sock)
            try:
                yield server, sock.getsockname()[1]
            finally:
                # A graceful stop even when the block failed: cancelling `serve` instead
                # would skip uvicorn's shutdown (open connections, the app's lifespan).
                # Shielded, so a cancelled test still cleans up; bounded by the deadline.
                server.should_exit = True
                with anyio.CancelScope(shield=True), anyio.fail_after(STOP_DEADLINE):
                    await stopped.wait()


@asynccontextmanager
async def run_server(app: ASGIApp, **options: Any) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """`app` on a real uvicorn, with its lifespan; stopped and closed even if the block fails.
    `options` are more of uvicorn's settings."""
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5, **options)
    async with serving(config) as running:
        yield running


# A WebSocket handshake by hand (RFC 6455's sample key): to read a refusal's body, which
# httpx-ws raises on (WebSocketUpgradeError) before reading it.
UPGRADE_HEADERS: Final = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def handshake(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """The server's answer to a WebSocket handshake on `url` (http://.../ws?...), body included."""
    return await client.get(url, headers={**UPGRADE_HEADERS, **(headers or {})})


async def collect_output(stream: IO[str], lines: list[str], ready: anyio.Event | None = None) -> None:
    """Every line a server writes to `stream` (a pipe of `serve_subprocess`), appended to
    `lines` as it comes (a pipe no one reads would fill and block the server) until EOF;
    `ready` is set once uvicorn listens (needs LOG_LEVEL=INFO or DEBUG)."""
    # Abandoned on cancel; stopping the process then ends the read with EOF.
    while line := await anyio.to_thread.run_sync(stream.readline, abandon_on_cancel=True):
        lines.append(line)
        if ready is not None and "Uvicorn running on" in line:
            ready.set()


def websocket_connections(server: uvicorn.Server) -> list[WebSocketsSansIOProtocol]:
    """The server's open WebSocket connections (uvicorn's protocol objects)."""
    return [c for c in server.server_state.connections if isinstance(c, WebSocketsSansIOProtocol)]


async def poll_until(condition: Callable[[], bool], timeout: float) -> None:
    """For state that nothing signals (a server's connections, a process's file
    descriptors): checked every 10 ms until true, failing after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - no event to wait for: that is the point
            await anyio.sleep(0.01)


def holds_connection(pid: int, port: int, client_port: int) -> bool:
    """Whether process `pid` has a file descriptor open on its TCP socket that serves
    `port` to the loopback client at `client_port` (found by inode in /proc)."""
    inodes = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            inodes.add(f"socket:[{inode}]")
    return bool(inodes & _fd_targets(pid))


def unsent_bytes(port: int, client_port: int) -> int:
    """What the kernel holds unsent on the server's side of the loopback TCP connection
    between `port` and the client at `client_port` (tx_queue in /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            return int(queues.split(":")[0], 16)
    return 0


def _fd_targets(pid: int) -> set[str]:
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed since the listing
            targets.add(os.readlink(fd))
    return targets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_subprocess(
    env: dict[str, str], *, args: Sequence[str] = (), stdout: int | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`python -m app ARGS` with `env` added to the environment; stopped however the block
    ends. Its log goes to a pipe (`process.stderr`); `stdout=subprocess.PIPE` pipes
    uvicorn's access lines (its stdout) too."""
    with subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:  # leaving it closes the pipe and reaps the process
        try:
            yield process
        finally:
            stop(process)


@asynccontextmanager
async def logged_server(env: dict[str, str], lines: list[str]) -> AsyncIterator[subprocess.Popen[str]]:
    """`serve_subprocess(env)`, ready to serve (needs LOG_LEVEL=INFO or DEBUG); every line
    it writes, uvicorn's access lines (its stdout) included, is appended to `lines`, and
    all of them are there once the block has ended (the process is stopped then)."""
    with serve_subprocess(env, stdout=subprocess.PIPE) as process:
        assert process.stderr is not None
        assert process.stdout is not None
        ready = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(collect_output, process.stderr, lines, ready)
            tasks.start_soon(collect_output, process.stdout, lines)
            try:
                with anyio.fail_after(30):
                    await ready.wait()
                yield process
            finally:
                # Then the readers see the end of its output. In a thread: while it stops,
                # the process may still call servers on this event loop (a collector).
                await anyio.to_thread.run_sync(stop, process)


def stop(process: subprocess.Popen[str], timeout: float = 10) -> None:
    """Ask `process` to stop; kill it if it has not within `timeout`. Either way it is
    reaped: no zombie, and no server left holding a port while later tests run."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@asynccontextmanager
async def app_process(
    env: dict[str, str], args: Sequence[str] = ()
) -> AsyncIterator[tuple[subprocess.Popen[str], list[str]]]:
    """`python -m app ARGS` (with LOG_LEVEL=INFO) once it listens, and the lines of its
    log so far (collected as they come, so its pipe never fills); stopped however the
    block ends."""
    lines: list[str] = []
    with serve_subprocess({"LOG_LEVEL": "INFO", **env}, args=args) as process:
        assert process.stderr is not None
        ready = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(collect_output, process.stderr, lines, ready)
            with anyio.fail_after(30):
                await ready.wait()
            try:
                yield process, lines
            finally:
                stop(process)  # then the reader sees the end of its output


async def exit_code(process: subprocess.Popen[str], timeout: float) -> int:
    """The process's exit code, once it has exited by itself; fails after `timeout`."""
    with anyio.fail_after(timeout):
        while process.poll() is None:  # noqa: ASYNC110 - a child's exit signals nothing here
            await anyio.sleep(0.01)
    return process.returncode


async def wait_status(client: httpx.AsyncClient, url: str, status: int, timeout: float) -> httpx.Response:
    """The first response from GET `url` with `status` (a refused connection counts as no
    answer yet: worker processes listen only once started). What a process does crosses no
    boundary the test can wait on, so its answers are polled."""
    with anyio.fail_after(timeout):
        while True:
            with contextlib.suppress(httpx.ConnectError):
                if (response := await client.get(url)).status_code == status:
                    return response
            await anyio.sleep(0.01)


async def wait_ready(process: subprocess.Popen[str]) -> None:
    """Wait for uvicorn's own readiness line (needs LOG_LEVEL=INFO): the one it logs once
    it listens, not "Application startup complete", which comes before."""
    assert process.stderr is not None
    with anyio.fail_after(30):
        # Not "Application startup complete": uvicorn logs that before it listens.
        while "Uvicorn running on" not in (
            # Abandoned on timeout; stopping the process then ends the read with EOF.
            line := await anyio.to_thread.run_sync(process.stderr.readline, abandon_on_cancel=True)
        ):
            assert line, "server exited before it was ready"


def gone(pid: int) -> bool:
    """Whether no process (not even an unreaped zombie) has this id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
