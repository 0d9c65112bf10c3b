"""`python -m app.client`: a command-line client for protocol v1 (docs/protocol.md).

    python -m app.client --text "what is 12 times 7"          # one question, printed answer
    python -m app.client --wav question.wav --save reply.wav   # speak a file, keep the answer
    python -m app.client wss://voice.example.com/ws --token T  # a deployed server
    python -m app.client                                        # interactive text chat

Exit codes: 0 done; 1 the server closed with an error (or did not answer in time);
2 bad arguments or input file; 3 the server could not be reached; 4 the server refused
the connection (HTTP 401/403: the token or origin; 503: full or auth unavailable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.http11 import Response

from app.audio import Resampler
from app.config import CLIENT_SAMPLE_RATES

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
FRAME_MS = 20
EXIT_OK, EXIT_SERVER_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Reply:
    """What one exchange produced, and whether it is over."""

    audio: bytearray = field(default_factory=bytearray)
    pending_tools: set[str] = field(default_factory=set)
    answered: bool = False
    open_responses: int = 0

    @property
    def done(self) -> bool:
        return self.answered and not self.pending_tools and self.open_responses == 0


def read_wav(path: Path) -> tuple[bytes, int]:
    """Mono PCM16 samples and their rate; stereo is mixed down."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise ClientError(f"{path}: only 16-bit PCM WAV files are supported", EXIT_USAGE)
            rate, channels, pcm = wav.getframerate(), wav.getnchannels(), wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise ClientError(f"{path}: cannot read WAV: {exc}", EXIT_USAGE) from None
    if channels > 1:
        import numpy as np

        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels).mean(axis=1)
        pcm = samples.astype("<i2").tobytes()
    return pcm, rate


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def session_url(url: str, input_rate: int | None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ClientError(f"{url}: the URL must start with ws:// or wss://", EXIT_USAGE)
    # Decoded once here and encoded once below: "token=a%2Fb" stays "a%2Fb".
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query["audio"] = "binary"
    if input_rate is not None:
        query["input_sample_rate"] = str(input_rate)
    return urlunsplit(parts._replace(query=urlencode(query)))


# What to do about a refused handshake, by HTTP status.
REFUSAL_HINTS = {
    401: "pass a valid token with --token",
    403: "the token or the origin is not allowed here",
    503: "the server is busy or cannot check tokens now; try again later",
}


def refusal(url: str, response: Response) -> str:
    """The server's own reason for refusing (its JSON body), and what to do about it."""
    try:
        body = json.loads(response.body)
        reason = f"{body['error']}: {body['message']}"
    except (ValueError, TypeError, KeyError):
        reason = response.reason_phrase
    hint = REFUSAL_HINTS.get(response.status_code)
    return f"{url} refused the connection: HTTP {response.status_code} {reason}" + (
        f" ({hint})" if hint else ""
    )


class Printer:
    def __init__(self, out: TextIO, raw: bool) -> None:
        self.out, self.raw = out, raw

    def event(self, message: dict[str, Any]) -> None:
        if self.raw:
            print(json.dumps(message), file=self.out, flush=True)
            return
        kind = message.get("type")
        if kind == "transcript" and message.get("final"):
            print(f"{message['role']}: {message['text']}", file=self.out, flush=True)
        elif kind == "tool_use":
            print(f"[tool] {message['name']} {json.dumps(message['input'])}", file=self.out, flush=True)
        elif kind == "tool_result":
            result = f"{message['name']} -> {message['status']}: {message['content']}"
            print(f"[tool] {result}", file=self.out, flush=True)
        elif kind == "interruption":
            print("[interrupted]", file=self.out, flush=True)
        elif kind == "error":
            print(f"[error] {message['code']}: {message['message']}", file=sys.stderr, flush=True)

    def audio(self, size: int) -> None:
        if self.raw:
            print(json.dumps({"type": "audio", "bytes": size}), file=self.out, flush=True)


class Client:
    def __init__(self, ws: ClientConnection, printer: Printer) -> None:
        self.ws = ws
        self.printer = printer
        self.session: dict[str, Any] = {}
        self.reply = Reply()
        self._changed = asyncio.Event()
        self.fatal: dict[str, Any] | None = None
        self.closed = False

    async def start(self) -> None:
        first = json.loads(await self.ws.recv())
        if first.get("type") != "session_start":
            self.printer.event(first)
            raise ClientError(f"unexpected first message: {first.get('type')}", EXIT_SERVER_ERROR)
        self.session = first
        self.printer.event(first)

    async def read(self) -> None:
        """Reads until the server closes; keeps `reply` up to date."""
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    self.reply.audio += frame
                    self.printer.audio(len(frame))
                    continue
                message = json.loads(frame)
                self.printer.event(message)
                self._track(message)
                self._changed.set()
        except ConnectionClosed:
            pass  # the close code is read from the connection afterwards
        finally:
            self.closed = True
            self._changed.set()

    def _track(self, message: dict[str, Any]) -> None:
        kind, reply = message.get("type"), self.reply
        if kind == "response_start":
            reply.open_responses += 1
        elif kind == "response_complete":
            reply.open_responses = max(0, reply.open_responses - 1)
        elif kind == "tool_use":
            reply.pending_tools.add(message["tool_use_id"])
        elif kind == "tool_result":
            reply.pending_tools.discard(message["tool_use_id"])
        elif kind in ("transcript", "text") and message.get("role") == "assistant" and message.get("final"):
            reply.answered = True
        elif kind == "error" and message.get("fatal"):
            self.fatal = message

    async def wait_reply(self, limit: float) -> Reply:
        deadline = time.monotonic() + limit
        while not self.reply.done:
            if self.closed:
                raise ClientError(f"the server closed the session: {self.close_detail()}", EXIT_SERVER_ERROR)
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientError(f"no complete answer within {limit:g} s", EXIT_SERVER_ERROR)
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue
        reply, self.reply = self.reply, Reply()
        return reply

    def close_detail(self) -> str:
        if self.fatal is not None:
            return f"{self.fatal['code']}: {self.fatal['message']}"
        return f"close code {self.ws.close_code}"

    @property
    def failed(self) -> bool:
        return self.fatal is not None or self.ws.close_code not in (None, 1000)

    async def send_text(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "text", "text": text}))

    async def stream(self, pcm: bytes, rate: int) -> None:
        """Real time, in 20 ms frames, on an absolute schedule."""
        size = rate * FRAME_MS // 1000 * 2
        started = time.monotonic()
        for number, offset in enumerate(range(0, len(pcm), size)):
            await self.ws.send(pcm[offset : offset + size])
            delay = started + (number + 1) * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def run(args: argparse.Namespace, out: TextIO) -> int:
    pcm, wav_rate = read_wav(args.wav) if args.wav else (b"", None)
    input_rate = wav_rate if wav_rate in CLIENT_SAMPLE_RATES else None
    headers = [tuple(h.split(":", 1)) for h in args.header]
    if args.token:
        headers.append(("Authorization", f"Bearer {args.token}"))
    url = session_url(args.url, input_rate)
    try:
        ws = await connect(
            url, additional_headers=[(k.strip(), v.strip()) for k, v in headers], max_size=None
        )
    except InvalidStatus as exc:
        raise ClientError(refusal(args.url, exc.response), EXIT_REFUSED) from None
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise ClientError(f"cannot connect to {args.url}: {exc}", EXIT_UNREACHABLE) from None
    except ValueError as exc:  # e.g. a malformed URL
        raise ClientError(f"{args.url}: {exc}", EXIT_USAGE) from None
    printer = Printer(out, args.json)
    async with ws:
        client = Client(ws, printer)
        try:
            await client.start()
        except ConnectionClosed:
            detail = f"the server closed the session at once (code {ws.close_code})"
            raise ClientError(detail, EXIT_SERVER_ERROR) from None
        reader = asyncio.create_task(client.read())
        try:
            await converse(client, args, pcm, wav_rate)
            await ws.send(json.dumps({"type": "end"}))
            await asyncio.wait_for(reader, args.timeout)  # the server closes after "end"
        except ConnectionClosed:
            pass  # judged below from the close code
        except TimeoutError:
            raise ClientError("the server did not close the session after 'end'", EXIT_SERVER_ERROR) from None
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if client.failed:
            raise ClientError(f"the server closed the session: {client.close_detail()}", EXIT_SERVER_ERROR)
    return EXIT_OK


async def converse(client: Client, args: argparse.Namespace, pcm: bytes, wav_rate: int | None) -> None:
    answers: list[Reply] = []
    if args.wav:
        rate = client.session["input_sample_rate"]
        if wav_rate != rate:
            assert wav_rate is not None
            resample = Resampler(wav_rate, rate)
            pcm = resample(pcm) + resample.flush()
        await client.stream(pcm + bytes(rate * 2), rate)  # then a second of silence ends the turn
        answers.append(await client.wait_reply(args.timeout))
    for text in args.text:
        await client.send_text(text)
        answers.append(await client.wait_reply(args.timeout))
    if not args.wav and not args.text:
        await interactive(client, args.timeout)
    if args.save:
        audio = b"".join(bytes(a.audio) for a in answers)
        write_wav(args.save, audio, client.session["output_sample_rate"])


async def interactive(client: Client, limit: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        print("> ", end="", flush=True, file=sys.stderr)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() in ("/quit", "/exit"):
            return
        if line.strip():
            await client.send_text(line.strip())
            await client.wait_reply(limit)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.client", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("url", nargs="?", default=DEFAULT_URL, help=f"server WebSocket URL (default {DEFAULT_URL})")
    add("--text", action="append", default=[], help="send this text and print the answer (repeatable)")
    add("--wav", type=Path, help="stream this 16-bit WAV file in real time as the user's speech")
    parser.add_argument("--save", type=Path, help="write the assistant's audio to this WAV file")
    parser.add_argument("--json", action="store_true", help="print every protocol event as a JSON line")
    parser.add_argument("--token", help="send 'Authorization: Bearer TOKEN'")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra header")
    add("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    args = parser.parse_args(argv)
    if any(":" not in h for h in args.header):
        parser.error("--header takes 'Name: value'")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args, out))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
