"""PCM16 mono resampling between a client's rate and a model's.

soxr's streaming resampler keeps filter state across chunks, so 20 ms frames resample
without clicks at the seams. Equal rates pass bytes through untouched (no copy).
"""

from __future__ import annotations

import numpy as np
import soxr


class Resampler:
    __slots__ = ("_stream", "in_rate", "out_rate")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
        )

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def __call__(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        out: np.ndarray = self._stream.resample_chunk(samples, last=last)
        return out.tobytes()

    def flush(self) -> bytes:
        """End of a stream: return what the filter still holds and start afresh."""
        if self._stream is None:
            return b""
        tail = self(b"", last=True)
        self._stream.clear()
        return tail

    def reset(self) -> None:
        """Drop buffered samples (barge-in: the tail of a cut-off reply must not play)."""
        if self._stream is not None:
            self._stream.clear()
