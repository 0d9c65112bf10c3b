"""Agent events to wire frames: strands' events in, `outbound` messages out.

One `OutputEncoder` per session holds what the mapping needs across events: partial
transcripts by content id, tool names by tool-use id, and the output resampler. Audio
at the client's rate in base64 mode is relayed as the model's own base64 string,
wrapped without parsing or re-encoding: that is the per-frame hot path. The audio sent
is counted here too (seconds, into `Traffic`), and it stops the session's `TurnClock`.
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from app.audio import Resampler
from app.metrics import Traffic, TurnClock
from app.wire import outbound as out
from app.wire.connection import Frame
from app.wire.inbound import AudioEncoding
from app.wire.outbound import AUDIO_FORMAT, dumps

TextKind = Literal["transcript", "text"]
NO_FRAMES: tuple[Frame, ...] = ()
INTERRUPTION = dumps(out.Interruption(type="interruption"))


def _tool_text(content: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for block in content:
        if "text" in block:
            parts.append(str(block["text"]))
        elif "json" in block:
            parts.append(json.dumps(block["json"], separators=(",", ":"), ensure_ascii=False, default=str))
    return "\n".join(parts)


class OutputEncoder:
    def __init__(self, client_rate: int, audio: AudioEncoding, traffic: Traffic, turns: TurnClock) -> None:
        self.client_rate = client_rate
        self.binary_audio = audio is AudioEncoding.BINARY
        self._traffic = traffic
        self._turns = turns
        self._seconds_per_byte = 0.5 / client_rate  # PCM16
        # Base64 is 4 characters for 3 bytes (the padding, at most 2 bytes a frame, is ignored).
        self._seconds_per_char = 0.75 * self._seconds_per_byte
        self._resamplers: dict[int, Resampler] = {}
        self._partials: dict[str, list[str]] = {}
        self._tool_names: dict[str, str] = {}
        # base64 chars need no JSON escaping, so the frame (an `outbound.Audio`) is built
        # by concatenation.
        self._audio_head = f'{{"type":"audio","sample_rate":{client_rate},"format":"{AUDIO_FORMAT}","audio":"'
        self._handlers: dict[str, Callable[[Mapping[str, Any]], Sequence[Frame]]] = {
            "bidi_audio_delta": self._audio,
            "bidi_audio_stop": self._audio_stop,
            "bidi_connection_start": self._connection_start,
            "bidi_response_start": self._response_start,
            "bidi_response_stop": self._response_stop,
            "bidi_transcript_start": self._partial_start,
            "bidi_transcript_delta": self._transcript_delta,
            "bidi_transcript_block": self._transcript_final,
            "bidi_text_start": self._partial_start,
            "bidi_text_delta": self._text_delta,
            "bidi_text_block": self._text_final,
            "bidi_tool_use_blocks": self._tool_use,
            "tool_result": self._tool_result,
            "bidi_barge_in": self._interruption,
            "bidi_usage": self._usage,
            "bidi_connection_restart": self._restart,
            "bidi_connection_warning": self._warning,
        }

    def encode(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        """Frames for one agent event; events with no wire form (history bookkeeping,
        reasoning, audio/transcript stream starts and stops) give none."""
        handler = self._handlers.get(event.get("type", ""))  # ToolResultMessageEvent has no type
        return handler(event) if handler is not None else NO_FRAMES

    # audio -----------------------------------------------------------------

    def _resampler(self, model_rate: int) -> Resampler:
        resampler = self._resamplers.get(model_rate)
        if resampler is None:
            resampler = self._resamplers[model_rate] = Resampler(model_rate, self.client_rate)
        return resampler

    def _pcm_frame(self, pcm: bytes) -> Sequence[Frame]:
        if not pcm:
            return NO_FRAMES
        self._traffic.audio_out += len(pcm) * self._seconds_per_byte
        if self.binary_audio:
            return (pcm,)
        return (self._audio_head + b64encode(pcm).decode("ascii") + '"}',)

    def _audio(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        audio: str = event["audio"]
        if self._turns.waiting_since and audio:
            self._turns.answered()
        resampler = self._resampler(event["sample_rate"])
        if resampler.passthrough and not self.binary_audio:
            self._traffic.audio_out += len(audio) * self._seconds_per_char
            return (self._audio_head + audio + '"}',)
        return self._pcm_frame(resampler(b64decode(audio)))

    def _audio_stop(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        tails = [r.flush() for r in self._resamplers.values() if not r.passthrough]
        return self._pcm_frame(b"".join(tails))

    def _interruption(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        for resampler in self._resamplers.values():
            resampler.reset()
        return (INTERRUPTION,)

    # lifecycle ---------------------------------------------------------------

    def _connection_start(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        message = out.ConnectionStart(
            type="connection_start", connection_id=event["connection_id"], model=event["model"]
        )
        return (dumps(message),)

    def _response_start(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        return (dumps(out.ResponseStart(type="response_start", response_id=event["response_id"])),)

    def _response_stop(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        return (dumps(out.ResponseComplete(type="response_complete", response_id=event["response_id"])),)

    def _restart(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        message = out.ConnectionRestart(
            type="connection_restart",
            reason=event["reason"],
            turn_interrupted=bool(event.get("turn_interrupted")),
        )
        return (dumps(message),)

    def _warning(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        return (dumps(out.ConnectionWarning(type="connection_warning", time_left_s=event["time_left_s"])),)

    def _usage(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        message = out.Usage(
            type="usage",
            input_tokens=event.get("input_tokens", 0),
            output_tokens=event.get("output_tokens", 0),
            total_tokens=event.get("total_tokens", 0),
        )
        return (dumps(message),)

    # transcripts and text ------------------------------------------------------

    def _partial_start(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        self._partials[event["content_id"]] = []
        return NO_FRAMES

    def _partial(self, kind: TextKind, role: str, event: Mapping[str, Any]) -> Sequence[Frame]:
        content_id = event["content_id"]
        parts = self._partials.setdefault(content_id, [])
        parts.append(event["delta"])
        message = out.Transcript(
            type=kind, role=role, text="".join(parts), final=False, content_id=content_id
        )
        return (dumps(message),)

    def _final(self, kind: TextKind, role: str, text: str, event: Mapping[str, Any]) -> Sequence[Frame]:
        content_id = event["content_id"]
        self._partials.pop(content_id, None)
        return (dumps(out.Transcript(type=kind, role=role, text=text, final=True, content_id=content_id)),)

    def _transcript_delta(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        return self._partial("transcript", event["role"], event)

    def _transcript_final(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        role = event["role"]
        if role == "user":  # the end of a spoken turn: its answer is due
            self._turns.user_turn_ended()
        return self._final("transcript", role, event["transcript"], event)

    def _text_delta(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        return self._partial("text", "assistant", event)

    def _text_final(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        return self._final("text", "assistant", event["text"], event)

    # tools -------------------------------------------------------------------

    def _tool_use(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        frames = []
        for use in event["tool_uses"]:
            self._tool_names[use["toolUseId"]] = use["name"]
            message = out.ToolUse(
                type="tool_use", tool_use_id=use["toolUseId"], name=use["name"], input=use["input"]
            )
            frames.append(dumps(message))
        return frames

    def _tool_result(self, event: Mapping[str, Any]) -> Sequence[Frame]:
        result = event["tool_result"]
        tool_use_id = result["toolUseId"]
        message = out.ToolResult(
            type="tool_result",
            tool_use_id=tool_use_id,
            name=self._tool_names.pop(tool_use_id, ""),
            status=result["status"],
            content=_tool_text(result.get("content", ())),
        )
        return (dumps(message),)
