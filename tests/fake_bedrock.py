"""A fake Amazon Bedrock Runtime endpoint for Nova Sonic's bidirectional stream, on loopback.

The real client stack runs against it unchanged: strands' `BedrockNovaSonicModel`, the
smithy client with SigV4 and event-stream signing, awscrt's HTTP/2 over TLS. Only the
endpoint is ours (`BEDROCK_ENDPOINT_URL`), served with a certificate from a throwaway CA
that the test makes the process trust through `SSL_CERT_FILE`
(../shared/reference/nova-wire.md has the facts this is built on).

    h2 over TLS (ALPN h2) ─> one `NovaStream` per POST .../invoke-with-bidirectional-stream
        signed envelopes ─> inner event messages ─> {"event": {...}} ─> `FakeNova` script
        `FakeNova` script ─> unsigned event messages ─> DATA frames (flow-controlled)

What the scripted Nova does (`FakeNova`):
- text "what is A times B": a `toolUse` of `calculator`, then it speaks the tool's result;
- text "tell me a long story": speaks until interrupted (user speech barges in);
- text "time out": a `modelTimeoutException` (strands restarts the connection);
- text "fail": an `internalServerException` (a fatal model error);
- any other text: "You said: TEXT", as a speculative transcript, audio and a final text;
- speech (audio above a level) followed by `SILENCE_MS` of quiet: a user transcript
  "[N ms of speech at R Hz]" measured from what arrived, then an answer;
- `FakeBedrock.time_out_every_connection`: every connection times out once it has started.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import ipaddress
import json
import ssl
import struct
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smithy_aws_event_stream.events import Event, EventMessage

SPEECH_LEVEL = 500  # RMS of a 16-bit frame above which the fake hears speech
SILENCE_MS = 300  # quiet after speech that ends the user's turn
CHUNK_MS = 100  # audio output per audioOutput event
STORY_CHUNKS = 300  # a "long story" is at most this many chunks (30 s), paced in real time
_PATH_SUFFIX = "/invoke-with-bidirectional-stream"
TIMED_OUT = "Model has timed out in processing the request"


# --- TLS: a throwaway CA and a certificate for 127.0.0.1 ---------------------------------


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certificates(directory: Path) -> Certificates:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-bedrock test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# --- AWS event-stream messages -------------------------------------------------------------


def _chunk(event: dict[str, Any]) -> bytes:
    body = json.dumps({"event": event}).encode()
    payload = json.dumps({"bytes": base64.b64encode(body).decode()}).encode()
    headers = {":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"}
    return EventMessage(headers=headers, payload=payload).encode()


def _exception(kind: str, message: str) -> bytes:
    headers = {":message-type": "exception", ":exception-type": kind, ":content-type": "application/json"}
    return EventMessage(headers=headers, payload=json.dumps({"message": message}).encode()).encode()


class EnvelopeReader:
    """Client-to-server bytes to Nova events: signed envelopes around `chunk` messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.signed = 0  # envelopes that carried a chunk signature
        self.ended = False  # the empty envelope that ends the input stream arrived

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        events = []
        while len(self._buffer) >= 4:
            (total,) = struct.unpack("!I", self._buffer[:4])
            if len(self._buffer) < total:
                break
            raw, self._buffer = bytes(self._buffer[:total]), self._buffer[total:]
            envelope = Event.decode(io.BytesIO(raw))
            assert envelope is not None
            headers = envelope.message.headers
            if ":chunk-signature" in headers:
                self.signed += 1
            if not envelope.message.payload:
                self.ended = True
                continue
            inner = Event.decode(io.BytesIO(envelope.message.payload))
            assert inner is not None
            assert inner.message.headers[":event-type"] == "chunk", inner.message.headers
            body = json.loads(inner.message.payload)["bytes"]
            events.append(json.loads(base64.b64decode(body))["event"])
        return events


# --- the scripted model ---------------------------------------------------------------------


def _tone(samples: int, rate: int) -> bytes:
    t = np.arange(samples) / rate
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()


def _start(kind: str, role: str, content_id: str, stage: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "role": role, "contentId": content_id}
    if stage is not None:
        body["additionalModelFields"] = json.dumps({"generationStage": stage})
    return {"contentStart": body}


def _end(kind: str, reason: str, content_id: str) -> dict[str, Any]:
    return {"contentEnd": {"type": kind, "stopReason": reason, "contentId": content_id}}


USAGE = {
    "details": {
        "delta": {
            "input": {"speechTokens": 3, "textTokens": 5},
            "output": {"speechTokens": 7, "textTokens": 11},
        }
    },
    "totalInputTokens": 8,
    "totalOutputTokens": 18,
    "totalTokens": 26,
}


def _level(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


@dataclass
class FakeNova:
    """One Bedrock connection's Nova: records what arrived, scripts what it says."""

    stream: NovaStream
    received: list[dict[str, Any]] = field(default_factory=list)
    prompt: dict[str, Any] = field(default_factory=dict)
    input_rate: int = 0
    audio_samples: int = 0  # all audio that arrived, in samples at `input_rate`
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # non-interactive (role, text)
    interrupted = False
    _contents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _texts: dict[str, list[str]] = field(default_factory=dict)
    _speech = 0  # samples of the current utterance
    _quiet = 0  # samples of quiet since it
    _speaking: asyncio.Task[None] | None = None

    @property
    def output_rate(self) -> int:
        config = self.prompt.get("audioOutputConfiguration", {})
        return int(config.get("sampleRateHertz", 24000))

    async def on_event(self, event: dict[str, Any]) -> None:
        self.received.append(event)
        (kind, body), *_ = event.items()
        if kind == "promptStart":
            self.prompt = body
            if self.stream.server.time_out_every_connection:
                await self.stream.fail("modelTimeoutException", TIMED_OUT)
        elif kind == "contentStart":
            self._contents[body["contentName"]] = body
            if body["type"] == "AUDIO":
                self.input_rate = body["audioInputConfiguration"]["sampleRateHertz"]
        elif kind == "textInput":
            self._texts.setdefault(body["contentName"], []).append(body["content"])
        elif kind == "toolResult":
            self.tool_results.append(body)
        elif kind == "contentEnd":
            await self._content_end(body["contentName"])
        elif kind == "audioInput":
            await self._hear(base64.b64decode(body["content"]))

    async def _content_end(self, name: str) -> None:
        start = self._contents.pop(name, {})
        text = "".join(self._texts.pop(name, []))
        if start.get("type") == "TOOL" and self.tool_results:
            result = json.loads(self.tool_results[-1]["content"])
            await self._reply(f"The answer is {result.get('text', result)}.")
        elif start.get("type") == "TEXT" and not start.get("interactive", True):
            self.history.append((start["role"], text))
        elif start.get("type") == "TEXT":
            await self._user_text(text)

    async def _user_text(self, text: str) -> None:
        await self._stop_speaking()
        if text == "time out":
            await self.stream.fail("modelTimeoutException", TIMED_OUT)
        elif text == "fail":
            await self.stream.fail("internalServerException", "The system encountered an unexpected error")
        elif text == "tell me a long story":
            story = self._say("Once upon a time", chunks=STORY_CHUNKS, paced=True)
            self._speaking = self.stream.server.spawn(story)
        elif text.startswith("what is ") and " times " in text:
            a, b = text.removeprefix("what is ").split(" times ")
            await self._use_calculator(f"{a.strip()}*{b.strip()}")
        else:
            await self._reply(f"You said: {text}")

    async def _hear(self, pcm: bytes) -> None:
        samples = len(pcm) // 2
        self.audio_samples += samples
        if _level(pcm) > SPEECH_LEVEL:
            if self._speaking is not None and not self._speaking.done():
                await self._stop_speaking(barge_in=True)
            self._speech += samples + self._quiet
            self._quiet = 0
        elif self._speech:
            self._quiet += samples
            if self._quiet * 1000 >= SILENCE_MS * self.input_rate:
                heard_ms = round(self._speech * 1000 / self.input_rate)
                self._speech = self._quiet = 0
                await self._user_transcript(f"[{heard_ms} ms of speech at {self.input_rate} Hz]")
                await self._reply("I heard you.")

    # what Nova sends ----------------------------------------------------------------

    async def _user_transcript(self, text: str) -> None:
        content_id = str(uuid.uuid4())
        await self.stream.emit(_start("TEXT", "USER", content_id, "FINAL"))
        await self.stream.emit({"textOutput": {"role": "USER", "content": text, "contentId": content_id}})
        await self.stream.emit(_end("TEXT", "END_TURN", content_id))

    async def _use_calculator(self, expression: str) -> None:
        content_id = str(uuid.uuid4())
        tool_use = {
            "toolUseId": str(uuid.uuid4()),
            "toolName": "calculator",
            "content": json.dumps({"expression": expression}),
            "contentId": content_id,
        }
        await self.stream.emit(_start("TOOL", "TOOL", content_id))
        await self.stream.emit({"toolUse": tool_use})
        await self.stream.emit(_end("TOOL", "TOOL_USE", content_id))

    async def _reply(self, text: str) -> None:
        await self._say(text, chunks=5, paced=False)

    async def _say(self, text: str, *, chunks: int, paced: bool) -> None:
        """Speculative text, audio in `CHUNK_MS` chunks, usage, then the final text."""
        emit = self.stream.emit
        text_id, audio_id, final_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        await emit(_start("TEXT", "ASSISTANT", text_id, "SPECULATIVE"))
        await emit({"textOutput": {"role": "ASSISTANT", "content": text, "contentId": text_id}})
        await emit(_end("TEXT", "PARTIAL_TURN", text_id))
        await emit(_start("AUDIO", "ASSISTANT", audio_id))
        rate = self.output_rate
        chunk = base64.b64encode(_tone(rate * CHUNK_MS // 1000, rate)).decode()
        try:
            for _ in range(chunks):
                await emit({"audioOutput": {"content": chunk, "contentId": audio_id}})
                if paced:
                    await asyncio.sleep(CHUNK_MS / 1000)
        except asyncio.CancelledError:  # interrupted: Nova closes the audio, then the text
            await emit(_end("AUDIO", "INTERRUPTED", audio_id))
            await emit(_end("TEXT", "INTERRUPTED", text_id))
            raise
        await emit(_end("AUDIO", "END_TURN", audio_id))
        await emit({"usageEvent": USAGE})
        await emit(_start("TEXT", "ASSISTANT", final_id, "FINAL"))
        await emit({"textOutput": {"role": "ASSISTANT", "content": text, "contentId": final_id}})
        await emit(_end("TEXT", "END_TURN", final_id))

    def stop(self) -> None:
        if self._speaking is not None:
            self._speaking.cancel()

    async def _stop_speaking(self, barge_in: bool = False) -> None:
        task, self._speaking = self._speaking, None
        if task is None or task.done():
            return
        self.interrupted = barge_in
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # we were cancelled too, not only `task`
                raise


# --- HTTP/2 ---------------------------------------------------------------------------------


class NovaStream:
    """One bidirectional-stream request: what the client sent, and the fake Nova answering."""

    def __init__(self, server: FakeBedrock, connection: _Connection, stream_id: int, headers: dict[str, str]):
        self.server = server
        self.connection = connection
        self.stream_id = stream_id
        self.headers = headers
        self.reader = EnvelopeReader()
        self.nova = FakeNova(self)
        self.closed = asyncio.Event()
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ended = False

    @property
    def path(self) -> str:
        return self.headers[":path"]

    async def run(self) -> None:
        while (event := await self._inbox.get()) is not None:
            await self.nova.on_event(event)

    def feed(self, data: bytes) -> None:
        for event in self.reader.feed(data):
            self._inbox.put_nowait(event)

    def input_ended(self) -> None:
        self._inbox.put_nowait(None)

    async def emit(self, event: dict[str, Any]) -> None:
        if not self._ended:
            await self.connection.send(self.stream_id, _chunk(event))

    async def fail(self, kind: str, message: str) -> None:
        """An exception event ends the response, as Bedrock does."""
        if self._ended:
            return
        await self.connection.send(self.stream_id, _exception(kind, message))
        self._ended = True
        self.connection.end_stream(self.stream_id)


class _Connection:
    def __init__(self, server: FakeBedrock, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.streams: dict[int, NovaStream] = {}
        self._window = asyncio.Event()

    def close(self) -> None:
        self.writer.close()
        self._window.set()

    async def serve(self) -> None:
        self.h2.initiate_connection()
        self._flush()
        try:
            while data := await self.reader.read(65536):
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    break
                for event in events:
                    self._handle(event)
                self._flush()
        except (ConnectionError, ssl.SSLError):
            pass  # the client went away: its streams end below
        finally:
            for stream in self.streams.values():
                stream.input_ended()
                stream.closed.set()
            self._window.set()
            self.writer.close()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            # header_encoding="utf-8" makes h2 hand over str; its annotations say bytes.
            headers = dict(cast(list[tuple[str, str]], event.headers))
            if not headers.get(":path", "").partition("?")[0].endswith(_PATH_SUFFIX):
                self.h2.send_headers(event.stream_id, [(":status", "404")], end_stream=True)
                return
            opened = NovaStream(self.server, self, event.stream_id, headers)
            self.streams[event.stream_id] = opened
            self.server.streams.append(opened)
            self.h2.send_headers(
                event.stream_id, [(":status", "200"), ("content-type", "application/vnd.amazon.eventstream")]
            )
            self.server.spawn(opened.run())
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream := self.streams.get(event.stream_id):
                stream.feed(event.data)
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            if stream := self.streams.get(event.stream_id):
                stream.input_ended()
                stream.closed.set()
        elif isinstance(event, h2.events.WindowUpdated):
            self._window.set()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def send(self, stream_id: int, data: bytes) -> None:
        """DATA frames within the peer's flow-control window and frame size."""
        view = memoryview(data)
        while view and not self.writer.is_closing():
            try:
                window = self.h2.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                return
            size = min(window, self.h2.max_outbound_frame_size, len(view))
            if size <= 0:
                self._window.clear()
                await self._window.wait()
                if self.writer.is_closing():
                    return
                continue
            try:
                self.h2.send_data(stream_id, bytes(view[:size]))
            except h2.exceptions.StreamClosedError:
                return
            view = view[size:]
            self._flush()
        try:
            await self.writer.drain()
        except ConnectionError:
            return  # the client went away; its stream ends when serve() sees it

    def end_stream(self, stream_id: int) -> None:
        try:
            self.h2.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            return
        self._flush()


class FakeBedrock:
    """`async with FakeBedrock(certs).serve() as url:` a Bedrock Runtime endpoint on 127.0.0.1.

    Every task it runs (connections, streams, speech) belongs to the task group of
    `serve()`, and leaving it closes every connection."""

    def __init__(self, certificates: Certificates) -> None:
        self.certificates = certificates
        self.streams: list[NovaStream] = []  # every bidirectional stream, in arrival order
        self.time_out_every_connection = False
        self.url = ""
        self._connections: set[_Connection] = set()
        self._tasks: asyncio.TaskGroup | None = None

    @property
    def novas(self) -> list[FakeNova]:
        return [s.nova for s in self.streams]

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tasks is not None, "the fake is not serving"
        return self._tasks.create_task(coroutine)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.cert_file, self.certificates.key_file)
        context.set_alpn_protocols(["h2"])
        return context

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            server = await asyncio.start_server(
                lambda r, w: self.spawn(self._accept(r, w)), "127.0.0.1", 0, ssl=self._ssl_context()
            )
            self.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            try:
                yield self.url
            finally:
                server.close()
                for connection in list(self._connections):
                    connection.close()
                for stream in self.streams:
                    stream.input_ended()
                    stream.nova.stop()
