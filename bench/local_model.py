"""Latency and cost of the offline `local` model, measured through a real server on loopback.

Starts `python -m app` (MODEL_PROVIDER=local, LOCAL_BRAIN=rules, END_OF_SPEECH_MS=500), opens
one WebSocket session (`?audio=binary`) and streams each utterance (espeak-ng at 140 wpm,
16 kHz, after 0.3 s of silence) in real time as 20 ms binary frames on an absolute monotonic
schedule, then silence until the reply's final assistant transcript and `response_complete`
have arrived and its audio has played by the server's reckoning (each chunk received ends
at max(arrival, previous end) + its duration), plus 0.3 s. Per utterance:

- speech_end: send time of the frame holding the last voiced sample (|x| > 300);
- endpoint: send time of the frame that makes the endpointer fire, found by feeding every
  frame sent, in the same 20 ms chunks, to a local `Endpointer(500)` as well: it is
  deterministic and sees the server's bytes, framing and history, so it fires on the same
  frame (one started afresh per utterance can be 60 ms off: the VAD keeps state);
- user_final / first_audio: arrival of the final user transcript and of the first binary
  audio frame after it.

Recognition and synthesis real-time factors are measured offline in this process (CPU time
from `time.process_time`, all threads, over audio seconds): recognition with the server's
kind of `Recognizer` over the endpointer's speech segments in the chunks it yields;
synthesis of the reply texts the server sent, sentence by sentence, at the server's voice
and rate. Server CPU comes from /proc/<pid>/stat (utime + stime) around the utterances,
peak RSS from VmHWM in /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from app.audio import Resampler
from app.config import Settings
from app.models.local.endpointer import Endpointer, Mark
from app.models.local.recognizer import DecoderPool, Recognizer
from app.models.local.rules import RulesBrain
from app.models.local.synthesizer import Synthesizer
from app.models.local.text import split_sentences
from bench._server import app_server, cpu_seconds, memory_mb

RATE, FRAME_S = 16000, 0.02
FRAME_BYTES = int(RATE * FRAME_S) * 2
SILENCE = bytes(FRAME_BYTES)
WARMUP_FRAMES = 50  # 1 s of silence before the first utterance
VOICED, LEAD_S, MARGIN_S, REPLY_TIMEOUT_S = 300, 0.3, 0.3, 15.0
PHRASES = [
    *["what is twelve times seven", "what's nine times eight", "calculate fifteen plus twenty seven"],
    *["what is one hundred divided by four", "square root of eighty one", "what time is it in tokyo"],
    *["what time is it in london", "what time is it in new york", "hello there", "good morning"],
    "what can you do",
]


@dataclass
class Utterance:
    text: str
    frames: list[bytes]  # leading silence + speech, 20 ms each
    speech_end_frame: int  # the frame holding the last voiced sample


@dataclass
class Result:
    text: str
    speech_end: float = math.nan
    endpoint: float = math.nan
    user_finals: list[tuple[float, str]] = field(default_factory=list)
    first_audio: float | None = None
    audio_s: float = 0.0
    playback_end: float = 0.0
    replies: list[str] = field(default_factory=list)
    complete: bool = False
    interruptions: list[float] = field(default_factory=list)
    stray_audio_frames: int = 0
    errors: list[str] = field(default_factory=list)
    segments: list[list[bytes]] = field(default_factory=list, repr=False)  # what the endpointer passed on

    @property
    def ok(self) -> bool:
        return bool(self.user_finals and self.first_audio is not None and self.replies and self.complete)


def ms(seconds: float | None) -> float:
    return math.nan if seconds is None else round(seconds * 1000, 1)


async def utterance(text: str) -> Utterance:
    synthesizer, resample = Synthesizer("matthew", 140), Resampler(22050, RATE)
    pcm = bytes(int(LEAD_S * RATE) * 2) + resample(await synthesizer.synthesize(text)) + resample.flush()
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    voiced = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)) > VOICED)
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    return Utterance(text, frames, int(voiced[-1]) // (FRAME_BYTES // 2))


class Session:
    """One WebSocket: a paced sender (with a twin of the server's endpointer) and a
    receiver that stamps arrivals into `current`."""

    def __init__(self, ws: AsyncWebSocketSession, output_rate: int) -> None:
        self.ws, self.output_rate, self.t0, self.sent = ws, output_rate, time.monotonic(), 0
        self.endpointer, self.current, self.closed = Endpointer(500), cast(Result | None, None), False

    async def send(self, frame: bytes) -> float:
        due = self.t0 + self.sent * FRAME_S
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        await self.ws.send_bytes(frame)
        sent_at, r = time.monotonic(), self.current
        self.sent += 1
        for mark, speech in self.endpointer.feed(frame):
            if r is None:
                continue
            if mark is Mark.START:
                r.segments.append([])
            elif mark is Mark.SPEECH and r.segments:
                r.segments[-1].append(speech)
            elif mark is Mark.END and math.isnan(r.endpoint):
                r.endpoint = sent_at
        return sent_at

    async def receive(self) -> None:
        try:
            while True:
                event = await self.ws.receive()
                self.on_message(time.monotonic(), getattr(event, "data", None))
        except Exception as exc:  # the socket closed: the sender notices `closed`
            self.closed = True
            if self.current is not None:
                self.current.errors.append(f"receive: {type(exc).__name__}: {exc}")

    def on_message(self, now: float, data: Any) -> None:
        if (r := self.current) is None:
            return
        if isinstance(data, bytes | bytearray):
            if not r.user_finals:
                r.stray_audio_frames += 1
                return
            r.first_audio = r.first_audio if r.first_audio is not None else now
            duration = len(data) / 2 / self.output_rate
            r.audio_s += duration
            r.playback_end = max(now, r.playback_end) + duration  # the server's reckoning
            return
        message = json.loads(data) if isinstance(data, str) else {}
        kind = message.get("type")
        if kind == "transcript" and message.get("final"):
            if message["role"] == "user":
                r.user_finals.append((now, message["text"]))
            else:
                r.replies.append(message["text"])
        elif kind == "response_complete" and r.replies:
            r.complete = True
        elif kind == "interruption":
            r.interruptions.append(now)
        elif kind == "error":
            r.errors.append(f"{message.get('code')}: {message.get('message')}")

    async def run(self, utterance: Utterance) -> Result:
        r = self.current = Result(utterance.text)
        i = 0
        while not self.closed:
            sent_at = await self.send(utterance.frames[i] if i < len(utterance.frames) else SILENCE)
            r.speech_end = sent_at if i == utterance.speech_end_frame else r.speech_end
            i += 1
            if i < len(utterance.frames):
                continue
            played = r.first_audio is not None and sent_at >= r.playback_end + MARGIN_S
            if (r.complete and played) or sent_at - r.speech_end > REPLY_TIMEOUT_S + r.audio_s:
                break
        self.current = None
        return r


async def handshake(ws: AsyncWebSocketSession) -> int:
    """The session's output rate, once `connection_start` says the model is up."""
    async with asyncio.timeout(30):
        start = json.loads(await ws.receive_text())
        while (message := json.loads(await ws.receive_text()))["type"] != "connection_start":
            if message["type"] in ("error", "connection_close"):
                raise RuntimeError(f"session failed to start: {message}")
    return int(start["output_sample_rate"])


async def stream_all(port: int, pid: int, utterances: list[Utterance]) -> tuple[list[Result], float, float]:
    url = f"ws://127.0.0.1:{port}/ws?audio=binary"
    async with (
        httpx.AsyncClient() as client,
        aconnect_ws(url, client, session_class=AsyncWebSocketSession) as ws,
    ):
        session = Session(ws, await handshake(ws))
        receiver = asyncio.create_task(session.receive())
        try:
            for _ in range(WARMUP_FRAMES):
                await session.send(SILENCE)
            cpu_before, results = cpu_seconds(pid), list[Result]()
            for n, utterance in enumerate(utterances, 1):
                async with asyncio.timeout(REPLY_TIMEOUT_S + 60):
                    results.append(r := await session.run(utterance))
                heard = r.user_finals[-1][1] if r.user_finals else None
                print(
                    f"[{n}/{len(utterances)}] {'ok  ' if r.ok else 'FAIL'} {r.text!r} -> {heard!r}",
                    file=sys.stderr,
                )
            cpu = (cpu_seconds(pid) - cpu_before) / len(utterances)
            return results, cpu, memory_mb(pid)["VmHWM"]
        finally:
            receiver.cancel()


async def recognition_rtf(results: list[Result]) -> float:
    """The server's kind of recognizer over the segments its endpointer passed on, chunk by chunk."""
    pool = DecoderPool(1, grammar=RulesBrain().grammar())
    pool.prewarm()
    recognizer = Recognizer(pool)
    cpu = audio = 0.0
    for segment in (segment for r in results for segment in r.segments):
        start = time.process_time()
        await recognizer.begin()
        for chunk in segment:
            await recognizer.feed(chunk)
        await recognizer.finish()
        cpu += time.process_time() - start
        audio += sum(len(c) for c in segment) / 2 / RATE
    return cpu / audio if audio else math.nan


async def synthesis_rtf(replies: list[str]) -> float:
    settings = Settings()
    synthesizer = Synthesizer(settings.voice, settings.local_speech_rate)
    cpu = audio = 0.0
    for reply in replies:
        for sentence in split_sentences(reply, final=True)[0]:
            start = time.process_time()
            pcm = await synthesizer.synthesize(sentence)
            cpu += time.process_time() - start
            audio += len(pcm) / 2 / synthesizer.sample_rate
    return cpu / audio if audio else math.nan


def pct(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if not math.isnan(v)] or [math.nan]
    return float(np.percentile(clean, 50)), float(np.percentile(clean, 95))


def report(results: list[Result], rec: float, syn: float, cpu: float, rss: float, wall: float) -> None:
    ok = [r for r in results if r.ok]
    exact = sum(1 for r in ok if " ".join(t for _, t in r.user_finals) == r.text)
    total = pct([ms(r.first_audio - r.speech_end) for r in ok if r.first_audio is not None])
    wait = pct([ms(r.endpoint - r.speech_end) for r in ok])
    after = pct([ms(r.first_audio - r.endpoint) for r in ok if r.first_audio is not None])
    rows: list[tuple[str, str, str, bool | None]] = [
        ("utterances answered (ok/total)", f"{len(ok)}/{len(results)}", ">= 20", len(ok) >= 20),
        ("exact user transcripts", f"{exact}/{len(results)}", "", None),
        ("first audio after end of speech p50 / p95", "{:.0f} / {:.0f} ms".format(*total), "p50 <= 700 ms",
         total[0] <= 700),
        ("endpointing wait p50 / p95", "{:.0f} / {:.0f} ms".format(*wait), "", None),
        ("first audio after endpointer p50 / p95", "{:.0f} / {:.0f} ms".format(*after), "p50 <= 250 ms",
         after[0] <= 250),
        ("recognition RTF", f"{rec:.3f}", "<= 0.3", rec <= 0.3),
        ("synthesis RTF", f"{syn:.3f}", "", None),
        ("server CPU per utterance", f"{cpu:.3f} s", "", None),
        ("server peak RSS", f"{rss:.0f} MB", "", None),
    ]  # fmt: skip
    print(f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`  ")
    print(f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; run took {wall:.0f} s\n")
    print("| metric | value | target | result |\n|---|---|---|---|")
    for name, value, target, passed in rows:
        print(f"| {name} | {value} | {target} | {'' if passed is None else 'PASS' if passed else 'FAIL'} |")
    odd = {
        "interruptions": sum(len(r.interruptions) for r in results),
        "utterances the endpointer split": sum(len(r.segments) > 1 for r in results),
        "audio frames before the user's final transcript": sum(r.stray_audio_frames for r in results),
        "errors": sum(len(r.errors) for r in results),
    }
    print("\nAnomalies: " + ", ".join(f"{name}: {n}" for name, n in odd.items()))


def per_utterance(r: Result) -> dict[str, Any]:
    final = r.user_finals[-1][0] if r.user_finals else None
    return {
        **{k: v for k, v in asdict(r).items() if k not in ("user_finals", "playback_end", "segments")},
        "segments": len(r.segments),
        "ok": r.ok,
        "recognized": [t for _, t in r.user_finals],
        "first_audio_after_speech_end_ms": ms(r.first_audio - r.speech_end if r.first_audio else None),
        "endpointing_wait_ms": ms(r.endpoint - r.speech_end),
        "first_audio_after_endpoint_ms": ms(r.first_audio - r.endpoint if r.first_audio else None),
        "user_final_after_endpoint_ms": ms(final - r.endpoint if final else None),
        "interruptions_after_speech_end_ms": [ms(t - r.speech_end) for t in r.interruptions],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--utterances", type=int, default=24, help="how many (at least 20 for the report)")
    parser.add_argument("--json", type=Path, help="write raw per-utterance numbers here")
    args = parser.parse_args()
    started = time.monotonic()
    texts = [PHRASES[i % len(PHRASES)] for i in range(args.utterances)]
    utterances = [await utterance(t) for t in texts]
    log: list[str] = []
    env = {
        "MODEL_PROVIDER": "local",
        "LOCAL_BRAIN": "rules",
        "END_OF_SPEECH_MS": "500",
        "LOG_LEVEL": "WARNING",
    }
    async with app_server(env, log) as (process, port):
        results, cpu, rss = await stream_all(port, process.pid, utterances)
    rec = await recognition_rtf(results)
    syn = await synthesis_rtf([reply for r in results for reply in r.replies])
    report(results, rec, syn, cpu, rss, time.monotonic() - started)
    if log:
        print("\nServer output (LOG_LEVEL=WARNING):\n" + "".join(log[-20:]), file=sys.stderr)
    if args.json:
        summary = {"recognition_rtf": rec, "synthesis_rtf": syn, "server_cpu_s": cpu, "server_rss_mb": rss}
        args.json.write_text(
            json.dumps({"summary": summary, "utterances": list(map(per_utterance, results))})
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
