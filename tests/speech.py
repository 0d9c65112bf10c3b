"""Test speech made with the same espeak-ng library the local model speaks with."""

from __future__ import annotations

import numpy as np

from app.audio import Resampler
from app.models.local.synthesizer import Synthesizer


async def speech(text: str, rate: int = 16000, words_per_minute: int = 140) -> bytes:
    """`text` spoken as PCM16 mono at `rate`."""
    synthesizer = Synthesizer("matthew", words_per_minute)
    resample = Resampler(synthesizer.sample_rate, rate)
    return resample(await synthesizer.synthesize(text)) + resample.flush()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def noise(seconds: float, seed: int = 0, rate: int = 16000, level: float = 3000.0) -> bytes:
    """White noise, which the endpointer takes for speech that never ends."""
    samples = np.random.default_rng(seed).standard_normal(int(seconds * rate)) * level
    return samples.clip(-32768, 32767).astype("<i2").tobytes()


def frames(pcm: bytes, rate: int = 16000, ms: int = 20) -> list[bytes]:
    size = rate * ms // 1000 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
