"""The clients of the load generator (bench/_loadgen.py, bench/_soak.py): picows
WebSockets on uvloop, frames parsed in C, one Python callback per frame.

A client sends one 640-byte frame (20 ms of 16 kHz PCM16) per turn of `ticker`, as a
binary frame or as a JSON `audio` message with base64. A frame's first 16 bytes are the
client's index, its sequence number and the time it was sent (`perf_counter_ns`), so
every reply is matched to its frame without a lookup: the echo model sends the audio
back unchanged at equal rates. What all clients of a run count goes to one `Run`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import re
import struct
import time
from array import array
from typing import Any, cast

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSHandshakeError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from bench._stats import LATE_MS, SequenceTracker

FRAME_BYTES = 640  # 20 ms of 16 kHz PCM16 mono
PERIOD_NS = 20_000_000
HEADER = struct.Struct("<IIq")  # client index, sequence number, send time in ns
B64_HEADER_CHARS = 24  # base64 characters that hold the header (18 bytes)
# The `audio` field's value in a JSON message, compact or not; no other field ends in it
# (a quote inside a string is escaped, so text cannot fake it either).
AUDIO_FIELD = re.compile(r'"audio"\s*:\s*"')
JSON_HEAD, JSON_TAIL = b'{"type":"audio","audio":"', b'"}'
END = b'{"type":"end"}'
EARLY_NS = 500_000  # a frame due this soon is sent now, in the same wake-up
MIN_SLEEP = 0.001  # uvloop's timers have millisecond resolution: shorter sleeps spin
SETUP_TIMEOUT = 15.0
CLOSE_TIMEOUT = 10.0
NEVER = 2**63 - 1


def ms(ns: float) -> float:
    return ns / 1e6


def audio_header(text: str) -> tuple[int, int, int] | None:
    """(client index, sequence number, send time) from a JSON `audio` message, or None for
    any other message. Only the header is decoded: parsing the whole of every reply would
    make the generator, not the server, the limit sooner."""
    found = AUDIO_FIELD.search(text)
    if found is None:
        return None
    index, seq, sent = HEADER.unpack_from(
        base64.b64decode(text[found.end() : found.end() + B64_HEADER_CHARS])
    )
    return index, seq, sent


class Run:
    """What all clients of one run add to: the measurement window and its counters."""

    def __init__(self) -> None:
        self.window_start = NEVER
        self.window_end = NEVER
        self.late_ns = int(LATE_MS * 1e6)
        self.sent = 0  # frames sent within the window
        self.received = 0  # ... of which came back
        self.late = 0  # ... of which came back later than LATE_MS
        self.replies = 0  # replies that arrived within the window (whenever sent)
        self.rtts = array("q")  # ns, frames sent within the window
        self.lateness = array("q")  # ns behind schedule, sends within the window
        self.crossed = 0  # replies carrying another client's index: must stay 0
        self.setups = array("q")  # ns from connect to session_start
        self.refused: collections.Counter[str] = collections.Counter()
        self.connect_errors: collections.Counter[str] = collections.Counter()
        self.server_errors: collections.Counter[str] = collections.Counter()
        self.unexpected_closes: collections.Counter[str] = collections.Counter()
        self.close_timeouts = 0
        self.stopping = False

    def in_window(self, ns: int) -> bool:
        return self.window_start <= ns < self.window_end


class Client(WSListener):
    def __init__(self, run: Run, index: int, binary: bool, started: int, ready_type: str) -> None:
        super().__init__()
        self.run = run
        self.index = index
        self.binary = binary
        self.started = started
        self.ready_type = ready_type
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.caught_up = asyncio.Event()
        self.transport: WSTransport | None = None
        self.tracker = SequenceTracker()
        self.buffer = bytearray(FRAME_BYTES)
        self.seq = 0
        self.active = False  # sending frames
        self.closing = False  # we started the close
        self.close_code: int | None = None
        self.session_ended = False  # connection_close arrived

    # sending ---------------------------------------------------------------

    def send_frame(self, due: int) -> None:
        transport = self.transport
        assert transport is not None
        run = self.run
        now = time.perf_counter_ns()
        HEADER.pack_into(self.buffer, 0, self.index, self.seq, now)
        if self.binary:
            transport.send(WSMsgType.BINARY, self.buffer)
        else:
            transport.send(WSMsgType.TEXT, JSON_HEAD + base64.b64encode(self.buffer) + JSON_TAIL)
        self.seq += 1
        if run.window_start <= now < run.window_end:
            run.sent += 1
            run.lateness.append(max(0, now - due))

    def stop_sending(self) -> None:
        self.active = False
        if self.tracker.outstanding(self.seq) <= 0:
            self.caught_up.set()

    # receiving (picows calls these) ----------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY:
            self._reply(*HEADER.unpack_from(frame.get_payload_as_memoryview()))
        elif kind is WSMsgType.TEXT:
            text = frame.get_payload_as_utf8_text()
            if header := audio_header(text):
                self._reply(*header)
            else:
                self._message(json.loads(text))
        elif kind is WSMsgType.CLOSE:
            code = frame.get_close_code()
            self.close_code = code.value if isinstance(code, WSCloseCode) else int(code)
            if not self.closing:
                self.run.unexpected_closes[str(self.close_code)] += 1
            if not transport.is_close_frame_sent:
                transport.send_close(code)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.active = False
        self.caught_up.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before session_start"))

    def _reply(self, index: int, seq: int, sent: int) -> None:
        run = self.run
        now = time.perf_counter_ns()
        if index != self.index:
            run.crossed += 1
            return
        self.tracker.seen(seq)
        if run.window_start <= now < run.window_end:
            run.replies += 1
        if run.window_start <= sent < run.window_end:
            rtt = now - sent
            run.received += 1
            run.rtts.append(rtt)
            if rtt > run.late_ns:
                run.late += 1
        if not self.active and self.tracker.outstanding(self.seq) <= 0:
            self.caught_up.set()

    def _message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "session_start":
            self.run.setups.append(time.perf_counter_ns() - self.started)
        elif kind == "error":
            self.run.server_errors[str(message.get("code"))] += 1
        elif kind == "connection_close":
            self.session_ended = True
        if kind == self.ready_type and not self.ready.done():
            self.ready.set_result(None)

    # closing ---------------------------------------------------------------

    async def close(self, end: bool = False) -> None:
        """Closes the socket (WebSocket close 1000), or with `end` asks the server to end
        the session ({"type":"end"}), and waits for the connection to go."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        self.closing = True
        if end:
            transport.send(WSMsgType.TEXT, END)
        else:
            transport.send_close(WSCloseCode.OK)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await transport.wait_disconnected()
        except TimeoutError:
            self.run.close_timeouts += 1
            transport.disconnect(graceful=False)


async def connect(run: Run, url: str, index: int, binary: bool, ready_type: str) -> Client | None:
    """A client whose session has started (its `ready_type` message arrived), or None with
    the reason counted: refused (by HTTP status), or a connection error."""
    started = time.perf_counter_ns()
    try:
        _, listener = await ws_connect(
            lambda: Client(run, index, binary, started, ready_type), url, websocket_handshake_timeout=10
        )
    except WSHandshakeError as exc:
        run.refused[str(int(exc.response.status)) if exc.response else "no response"] += 1
        return None
    except (OSError, TimeoutError, WSError) as exc:
        run.connect_errors[type(exc).__name__] += 1
        return None
    client = cast(Client, listener)
    try:
        async with asyncio.timeout(SETUP_TIMEOUT):
            await client.ready
    except (TimeoutError, ConnectionError) as exc:
        run.connect_errors[f"no {ready_type}: {type(exc).__name__}"] += 1
        await client.close()
        return None
    return client


async def ticker(run: Run, slots: list[Client | None]) -> None:
    """Sends every due frame: slot i's frames are due at epoch + (i/n + k) * 20 ms, so the
    phases are spread evenly; a slot whose client is not streaming is passed over."""
    n = len(slots)
    spacing = PERIOD_NS / n
    epoch = time.perf_counter_ns()
    k = 0
    while not run.stopping:
        horizon = time.perf_counter_ns() + EARLY_NS
        due = epoch + int(k * spacing)
        while due <= horizon:
            client = slots[k % n]
            if client is not None and client.active:
                client.send_frame(due)
            k += 1
            due = epoch + int(k * spacing)
        await asyncio.sleep(max(MIN_SLEEP, (due - time.perf_counter_ns()) / 1e9))


async def sleep_until(ns: int) -> None:
    await asyncio.sleep(max(0.0, (ns - time.perf_counter_ns()) / 1e9))
