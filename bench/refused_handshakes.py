"""How long a refused WebSocket handshake takes, measured on a real `python -m app` on loopback.

Starts `python -m app` (MODEL_PROVIDER=echo, AUTH_TOKENS set, the default same-host
Origin rule), then, one after the other, opens COUNT raw TCP connections per case, sends
a WebSocket upgrade request and times it from connect until the server has answered and
closed (a refusal) or sent its `101` (the accepted case, for comparison). Prints the
median, p95 and max per case, the HTTP status seen, and the server's CPU per handshake.

    .venv/bin/python -m bench.refused_handshakes --count 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench._server import app_server, cpu_seconds

KEY = "bench-key-0123456789abcdef"
CASES = {
    "refused: no token (401)": ("/ws", {}),
    "refused: wrong token (401)": ("/ws?token=not-the-key-0123456789", {}),
    "refused: other origin (403)": (f"/ws?token={KEY}", {"Origin": "https://evil.example"}),
    "accepted (101, for comparison)": (f"/ws?token={KEY}", {}),
}


async def handshake(port: int, target: str, headers: dict[str, str]) -> tuple[float, str]:
    """Seconds from connect to the end of the answer's headers (101) or the close (refusal)."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        if status != "101":
            await reader.read()  # the body, then the server's close
        return time.perf_counter() - started, status
    finally:
        writer.close()
        await writer.wait_closed()


async def main(count: int) -> None:
    log: list[str] = []
    env = {"MODEL_PROVIDER": "echo", "AUTH_TOKENS": KEY, "LOG_LEVEL": "WARNING"}
    async with app_server(env, log) as (process, port):
        for _ in range(20):  # warm up: imports, first-call paths
            await handshake(port, "/ws", {})
        for name, (target, headers) in CASES.items():
            cpu = cpu_seconds(process.pid)
            times, statuses = [], set()
            for _ in range(count):
                seconds, status = await handshake(port, target, headers)
                times.append(seconds * 1000)
                statuses.add(status)
            cpu_ms = (cpu_seconds(process.pid) - cpu) * 1000 / count
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(
                f"{name:32} HTTP {'/'.join(sorted(statuses))}  median {statistics.median(times):.2f} ms"
                f"  p95 {p95:.2f} ms  max {times[-1]:.2f} ms  server CPU {cpu_ms:.2f} ms each"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="handshakes per case (default 200)")
    asyncio.run(main(parser.parse_args().count))
