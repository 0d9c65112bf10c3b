"""The benchmark's bare echo (bench/baseline.py), with and without the two hand-offs of
bench/floor.py: over a real WebSocket it must answer every frame, in order, as our
server's echo model would (binary as it is, JSON audio as an `audio` message)."""

from __future__ import annotations

import base64
import json

import pytest

from bench.baseline import create_app
from tests.support import connect

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("hops", [0, 2])
async def test_every_frame_comes_back_in_order(hops: int) -> None:
    async with connect(create_app(hops)) as ws:
        assert json.loads(await ws.receive_text())["type"] == "session_start"
        frames = [bytes([i]) * 640 for i in range(20)]
        for frame in frames:
            await ws.send_bytes(frame)
        assert [await ws.receive_bytes() for _ in frames] == frames
        pcm = b"\x01\x02" * 320
        await ws.send_text(json.dumps({"type": "audio", "audio": base64.b64encode(pcm).decode()}))
        reply = json.loads(await ws.receive_text())
        assert (reply["type"], base64.b64decode(reply["audio"])) == ("audio", pcm)
