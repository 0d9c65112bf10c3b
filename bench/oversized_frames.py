"""Server memory under oversized frames, measured on a real `python -m app` on loopback.

Starts `python -m app` (MODEL_PROVIDER=echo), runs one normal session to warm it up, then
reads its RSS. Then CLIENTS connections at once each send one binary frame of FRAME_MIB
MiB, streamed from a raw socket (masked with a zero key, so the client holds only one
64 KiB chunk), and wait for the server's close. Once /health reports no session, RSS is
read again, with the peak (VmHWM).

    make bench-frames    (.venv/bin/python -m bench.oversized_frames --clients 30 --frame-mib 16)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import struct
import time

import httpx

from bench._server import app_server, handshake, memory_mb

CHUNK = 64 * 1024


async def read_close_code(reader: asyncio.StreamReader) -> int:
    """Skips server frames up to the close frame; returns its code (1006 on EOF)."""
    try:
        while True:
            b0, b1 = await reader.readexactly(2)
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))
            payload = await reader.readexactly(length)
            if b0 & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
    except (asyncio.IncompleteReadError, ConnectionError):
        return 1006


async def oversized_client(port: int, size: int) -> str:
    reader, writer = await handshake(port)
    try:
        writer.write(struct.pack("!BBQ", 0x82, 0x80 | 127, size) + b"\0\0\0\0")
        zeros = bytes(CHUNK)
        sent = 0
        try:
            while sent < size:
                writer.write(zeros[: min(CHUNK, size - sent)])
                await writer.drain()
                sent += CHUNK
        except ConnectionError:
            pass  # the server refused the frame and closed; its close frame may still be readable
        return str(await asyncio.wait_for(read_close_code(reader), 30))
    except (TimeoutError, ConnectionError) as exc:
        return type(exc).__name__
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def idle(port: int) -> None:
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 30
        while (await client.get(f"http://127.0.0.1:{port}/health")).json()["sessions"]:
            if time.monotonic() > deadline:
                raise RuntimeError("sessions still open after 30 s")
            await asyncio.sleep(0.1)


async def warm_up(port: int) -> None:
    reader, writer = await handshake(port)
    text = json.dumps({"type": "text", "text": "warm up"}).encode()
    writer.write(struct.pack("!BB", 0x81, 0x80 | len(text)) + b"\0\0\0\0" + text)
    writer.write(struct.pack("!BB", 0x88, 0x80 | 2) + b"\0\0\0\0" + struct.pack("!H", 1000))
    await writer.drain()
    await asyncio.wait_for(read_close_code(reader), 30)
    writer.close()
    await idle(port)


async def run(args: argparse.Namespace) -> dict[str, object]:
    env = {"MODEL_PROVIDER": "echo", "LOG_LEVEL": "INFO"}
    if args.max_message_bytes:
        env["MAX_MESSAGE_BYTES"] = str(args.max_message_bytes)
    async with app_server(env, []) as (process, port):
        await warm_up(port)
        before = memory_mb(process.pid)
        started = time.monotonic()
        size = int(args.frame_mib * 1024 * 1024)
        results = await asyncio.gather(*(oversized_client(port, size) for _ in range(args.clients)))
        elapsed = time.monotonic() - started
        await idle(port)
        after = memory_mb(process.pid)
    return {
        "clients": args.clients,
        "frame_mib": args.frame_mib,
        "rss_before_mb": round(before["VmRSS"], 1),
        "rss_after_mb": round(after["VmRSS"], 1),
        "peak_rss_mb": round(after["VmHWM"], 1),
        "close_codes": dict(collections.Counter(results)),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--frame-mib", type=float, default=16)
    parser.add_argument("--max-message-bytes", type=int, default=0, help="MAX_MESSAGE_BYTES (default: unset)")
    result = asyncio.run(run(parser.parse_args()))
    print("| metric | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key.replace('_', ' ')} | {value} |")


if __name__ == "__main__":
    main()
