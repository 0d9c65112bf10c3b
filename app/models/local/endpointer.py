"""Endpointing: where an utterance starts and ends in a 16 kHz PCM16 stream.

Wraps pocketsphinx's `Endpointer` (WebRTC-style VAD over 30 ms frames, deciding over a
sliding window). Input of any size is re-framed here.

The window is sized so that END fires about `silence_ms` after the last voiced sample:
measured on espeak speech, the decision lags the window by ~170 ms at ratio 0.8 (VAD
hangover plus framing), so a 500 ms silence uses a 410 ms window. START then lags the
onset of speech by ~300 ms, which is also how quickly barge-in is noticed.

An utterance is bounded: at `max_utterance_s` of speech it ends (END) and, if the speech
goes on, the next one starts with the next frame (START), so nothing downstream (a
decoder, its memory, a buffer of waiting speech) holds more than that. `cut()` ends one
early (the listener's bound in wall-clock time), `flush()` ends one whose audio stopped.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from pocketsphinx import Endpointer as _PsEndpointer
from pocketsphinx import Vad

SAMPLE_RATE: Final = 16000
_RATIO: Final = 0.8
_DECISION_LAG_S: Final = 0.17


class Mark(Enum):
    START = "start"
    SPEECH = "speech"
    END = "end"


Event = tuple[Mark, bytes]


class Endpointer:
    def __init__(
        self, silence_ms: int = 500, max_utterance_s: float = 15.0, vad_mode: int = Vad.LOOSE
    ) -> None:
        window = max(0.12, (silence_ms / 1000 - _DECISION_LAG_S) / _RATIO)
        self._ep = _PsEndpointer(window=window, ratio=_RATIO, vad_mode=vad_mode, sample_rate=SAMPLE_RATE)
        self.frame_bytes: int = self._ep.frame_bytes
        self._pending = bytearray()
        self._max_bytes = int(max_utterance_s * SAMPLE_RATE) * 2
        self._heard = 0  # speech bytes of the open utterance
        self._open = False  # START given, END not yet

    @property
    def in_speech(self) -> bool:
        return bool(self._ep.in_speech)

    @property
    def in_utterance(self) -> bool:
        return self._open

    def feed(self, pcm: bytes) -> list[Event]:
        """Events for `pcm`: START, then SPEECH audio (consecutive frames joined), then END."""
        self._pending += pcm
        events: list[Event] = []
        size, pending, ep = self.frame_bytes, self._pending, self._ep
        offset = 0
        speech = bytearray()
        while len(pending) - offset >= size:
            out = ep.process(bytes(pending[offset : offset + size]))
            offset += size
            if out is None:
                continue
            if self._open and self._heard + len(out) > self._max_bytes:  # the bound: end here
                self._close(events, speech)
            if not self._open:
                self._open, self._heard = True, 0
                events.append((Mark.START, b""))
            speech += out
            self._heard += len(out)
            if not ep.in_speech:
                self._close(events, speech)
        if speech:
            events.append((Mark.SPEECH, bytes(speech)))
        del pending[:offset]
        return events

    def cut(self) -> list[Event]:
        """End the open utterance here; if the speech goes on, its next frame starts another."""
        events: list[Event] = []
        if self._open:
            self._close(events, bytearray())
        return events

    def flush(self) -> list[Event]:
        """The audio stopped: end the open utterance with the speech the window still holds."""
        events: list[Event] = []
        if self._ep.in_speech:
            # end_stream takes at most one frame (never an empty one) and leaves the VAD
            # ready for a new stream; what is pending is less than a frame.
            rest = self._ep.end_stream(bytes(self._pending) or bytes(2))
            if rest and not self._open:
                self._open = True
                events.append((Mark.START, b""))
            if rest:
                events.append((Mark.SPEECH, bytes(rest)))
        self._pending.clear()
        return events + self.cut()

    def _close(self, events: list[Event], speech: bytearray) -> None:
        if speech:
            events.append((Mark.SPEECH, bytes(speech)))
            speech.clear()
        events.append((Mark.END, b""))
        self._open, self._heard = False, 0
