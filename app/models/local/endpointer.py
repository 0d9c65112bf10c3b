"""Endpointing: where an utterance starts and ends in a 16 kHz PCM16 stream.

Wraps pocketsphinx's `Endpointer` (WebRTC-style VAD over 30 ms frames, deciding over a
sliding window). Input of any size is re-framed here.

The window is sized so that END fires about `silence_ms` after the last voiced sample:
measured on espeak speech, the decision lags the window by ~170 ms at ratio 0.8 (VAD
hangover plus framing), so a 500 ms silence uses a 410 ms window. START then lags the
onset of speech by ~300 ms, which is also how quickly barge-in is noticed.
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
    def __init__(self, silence_ms: int = 500, vad_mode: int = Vad.LOOSE) -> None:
        window = max(0.12, (silence_ms / 1000 - _DECISION_LAG_S) / _RATIO)
        self._ep = _PsEndpointer(window=window, ratio=_RATIO, vad_mode=vad_mode, sample_rate=SAMPLE_RATE)
        self.frame_bytes: int = self._ep.frame_bytes
        self._pending = bytearray()

    @property
    def in_speech(self) -> bool:
        return bool(self._ep.in_speech)

    def feed(self, pcm: bytes) -> list[Event]:
        """Events for `pcm`: START, then SPEECH audio (consecutive frames joined), then END."""
        self._pending += pcm
        events: list[Event] = []
        size, pending, ep = self.frame_bytes, self._pending, self._ep
        offset = 0
        speech = bytearray()
        while len(pending) - offset >= size:
            was_in_speech = ep.in_speech
            out = ep.process(bytes(pending[offset : offset + size]))
            offset += size
            if out is None:
                continue
            if not was_in_speech:
                events.append((Mark.START, b""))
            speech += out
            if not ep.in_speech:
                events.append((Mark.SPEECH, bytes(speech)))
                speech.clear()
                events.append((Mark.END, b""))
        if speech:
            events.append((Mark.SPEECH, bytes(speech)))
        del pending[:offset]
        return events
