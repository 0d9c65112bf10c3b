"""Speech synthesis with espeak-ng, from the library and data that espeakng-loader ships.

libespeak-ng keeps process-wide state (one voice, one callback), so every synthesis in
the process runs on one dedicated worker thread, voice and rate set per call. A sentence
of speech takes a few milliseconds of CPU, so one thread serves many sessions.

`VOICE` holds Nova Sonic voice ids; `ESPEAK_VOICES` maps them to espeak voices (language
plus a male/female variant). An unknown voice falls back to `en-us` with a warning.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import espeakng_loader

logger = logging.getLogger(__name__)

ESPEAK_RATE: Final = 22050  # what espeak_Initialize reports for its voices
DEFAULT_VOICE: Final = "en-us"

# Nova Sonic voice id -> espeak-ng voice. Male voices use espeak's default variant.
ESPEAK_VOICES: Final[dict[str, str]] = {
    "matthew": "en-us",
    "tiffany": "en-us+f3",
    "amy": "en+f2",
    "olivia": "en+f4",
    "kiara": "en+f5",
    "arjun": "en+m3",
    "ambre": "fr+f3",
    "florian": "fr",
    "beatrice": "it+f3",
    "lorenzo": "it",
    "tina": "de+f3",
    "lennart": "de",
    "lupe": "es-419+f3",
    "carlos": "es-419",
}

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_RATE_PARAMETER = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def espeak_voice(voice: str) -> str:
    """The espeak voice for a `VOICE` setting: a Nova id, or an espeak name used as is."""
    name = voice.strip().lower()
    if name in ESPEAK_VOICES:
        return ESPEAK_VOICES[name]
    if _Engine.get().has_voice(name):
        return name
    logger.warning("unknown voice %r; using %s (known: %s)", voice, DEFAULT_VOICE, ", ".join(ESPEAK_VOICES))
    return DEFAULT_VOICE


class _Engine:
    """The process's one libespeak-ng, driven only from its worker thread."""

    _instance: _Engine | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as the library may call it
        self._voice = ""
        self.executor.submit(self._initialize).result()

    @classmethod
    def get(cls) -> _Engine:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Engine()
            return cls._instance

    def _initialize(self) -> None:
        data = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng initialisation failed (returned {rate})")
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], samples: int, events: int) -> int:
        if samples > 0:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0

    def has_voice(self, voice: str) -> bool:
        return self.executor.submit(self._set_voice, voice).result()

    def _set_voice(self, voice: str) -> bool:
        if voice == self._voice:
            return True
        ok = bool(self._lib.espeak_SetVoiceByName(voice.encode()) == 0)
        self._voice = voice if ok else ""
        return ok

    def synthesize(self, text: str, voice: str, words_per_minute: int) -> bytes:
        """Runs on the worker thread: PCM16 mono at ESPEAK_RATE."""
        if not self._set_voice(voice):
            self._set_voice(DEFAULT_VOICE)
        self._lib.espeak_SetParameter(_RATE_PARAMETER, words_per_minute, 0)
        self._chunks.clear()
        data = text.encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        pcm = b"".join(self._chunks)
        self._chunks.clear()
        return pcm


class Synthesizer:
    """Text to PCM16 speech at `ESPEAK_RATE`, off the event loop."""

    sample_rate: Final = ESPEAK_RATE

    def __init__(self, voice: str = "matthew", words_per_minute: int = 165) -> None:
        self._engine = _Engine.get()
        self.voice = espeak_voice(voice)
        self.words_per_minute = words_per_minute

    async def synthesize(self, text: str) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._engine.executor, self._engine.synthesize, text, self.voice, self.words_per_minute
        )
