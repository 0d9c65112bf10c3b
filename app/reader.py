"""The socket reader: one task per session that parses each client frame once
(app/wire/inbound.py), holds it to the input limits (app/edge/ratelimit.py), and puts
audio and text into the session's feeds (app/feed.py); pings are answered here, and a
bad frame gets its error, within the limits, while the session goes on.

It stamps the watchdog (app/edge/timeouts.py) around each wait for a frame, when
IDLE_TIMEOUT is on. The per-frame path (binary audio) is: receive, parse, one limit
check, one counter, `Feed.put`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import assert_never

import anyio
from starlette import status

from app.drain import Turn
from app.edge.ratelimit import InputLimits, RateLimited
from app.edge.refusals import Refusals
from app.edge.timeouts import NOT_WAITING, Watchdog
from app.errors import ProtocolError, SessionError
from app.feed import Feed, InputStalled
from app.metrics import Traffic
from app.outcome import Ending, Outcome
from app.wire import outbound as out
from app.wire.connection import ClientConnection, ClientGone
from app.wire.inbound import AudioIn, ClientMessage, End, Parser, Ping, TextIn

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reader:
    client: ClientConnection
    parser: Parser
    limits: InputLimits
    audio: Feed[bytes]
    text: Feed[str]
    watchdog: Watchdog
    turn: Turn
    traffic: Traffic
    refusals: Refusals
    drain_timeout: float  # how long an `end` waits for its input to reach the model
    ending: Ending

    async def run(self) -> None:
        ending = self.ending
        try:
            await self._read_frames()
        except ClientGone as gone:
            ending.client_gone(gone)
        except RateLimited as limited:
            self.refusals.record("rate_limited", limited.message)
            ending.finish(Outcome(limited.code, limited.close_code, limited))
        except InputStalled as stalled:
            logger.warning("model took no input for %.1fs; closing", stalled.seconds)
            error = SessionError(f"the model took no input for {stalled.seconds:g} s", code="input_stalled")
            ending.finish(Outcome("input_stalled", status.WS_1013_TRY_AGAIN_LATER, error))

    async def _read_frames(self) -> None:
        client, parser, ending = self.client, self.parser, self.ending
        receive, send, warn = client.receive, client.send, client.send_message
        put_audio, text = self.audio.put, self.text
        audio_limit, text_limit, watchdog = self.limits.audio, self.limits.text, self.watchdog
        traffic, seconds_per_byte = self.traffic, 0.5 / parser.input_sample_rate  # PCM16
        stamp = watchdog.watches_idle
        while True:
            if stamp:
                watchdog.waiting_since = time.monotonic()
                data = await receive()
                watchdog.waiting_since = NOT_WAITING
            else:
                data = await receive()
            message: ClientMessage | ProtocolError
            try:
                message = parser.binary(data) if isinstance(data, bytes) else parser.text(data)
            except ProtocolError as exc:
                if exc.fatal:
                    ending.finish(Outcome(exc.code, exc.close_code, exc))
                    return
                message = exc  # answered below, within the text limit
            # Audio is limited by its length; every other frame (pings, bad ones) by count.
            if isinstance(message, AudioIn):
                if wait := audio_limit.take(len(message.pcm)):
                    await audio_limit.pace(wait, warn)
            elif wait := text_limit.take(1):
                await text_limit.pace(wait, warn)
            match message:
                case AudioIn(pcm=pcm):
                    traffic.audio_in += len(pcm) * seconds_per_byte
                    await put_audio(pcm)
                case TextIn(text=user_text):
                    self.turn.owe()
                    await text.put(user_text)
                case Ping():
                    await send(out.PONG)
                case ProtocolError():
                    await warn(message.to_wire())
                case End():
                    await self._drain()
                    ending.finish(Outcome("client_end"))
                    return
                case _:
                    assert_never(message)

    async def _drain(self) -> None:
        """Let everything the client sent reach the model before the session ends."""
        with anyio.move_on_after(self.drain_timeout):
            await self.audio.join()
            await self.text.join()
