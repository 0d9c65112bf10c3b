"""How long a refused WebSocket handshake takes, measured on a real `python -m app` on loopback.

Starts `python -m app` (MODEL_PROVIDER=echo, AUTH_TOKENS set, the default same-host
Origin rule), then, one after the other, opens COUNT raw TCP connections per case, sends
a WebSocket upgrade request and times it from connect until the server has answered and
closed (a refusal) or sent its `101` (the accepted case, for comparison). Then the same
against a second server at capacity (MAX_SESSIONS=1, one session held open). Prints the
median, p95, p99 and max per case, the HTTP status seen, and the server's CPU per
handshake; for the capacity case also what /health counted and how many log lines the
refusals cost.

    .venv/bin/python -m bench.refused_handshakes --count 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench._server import app_server, cpu_seconds

KEY = "bench-key-0123456789abcdef"
CASES = {
    "refused: no token (401)": ("/ws", {}),
    "refused: wrong token (401)": ("/ws?token=not-the-key-0123456789", {}),
    "refused: other origin (403)": (f"/ws?token={KEY}", {"Origin": "https://evil.example"}),
    "accepted (101, for comparison)": (f"/ws?token={KEY}", {}),
}


def upgrade(port: int, target: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def handshake(port: int, target: str, headers: dict[str, str]) -> tuple[float, str]:
    """Seconds from connect to the end of the answer's headers (101) or the close (refusal)."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(upgrade(port, target, headers))
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        if status != "101":
            await reader.read()  # the body, then the server's close
        return time.perf_counter() - started, status
    finally:
        writer.close()
        await writer.wait_closed()


async def measure(name: str, pid: int, port: int, target: str, headers: dict[str, str], count: int) -> None:
    cpu = cpu_seconds(pid)
    times, statuses = [], set()
    for _ in range(count):
        seconds, status = await handshake(port, target, headers)
        times.append(seconds * 1000)
        statuses.add(status)
    cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / count
    times.sort()
    p95, p99 = (times[int(q * (len(times) - 1))] for q in (0.95, 0.99))
    print(
        f"{name:32} HTTP {'/'.join(sorted(statuses))}  median {statistics.median(times):.2f} ms"
        f"  p95 {p95:.2f} ms  p99 {p99:.2f} ms  max {times[-1]:.2f} ms  server CPU {cpu_ms:.2f} ms each"
    )


async def main(count: int) -> None:
    log: list[str] = []
    env = {"MODEL_PROVIDER": "echo", "AUTH_TOKENS": KEY, "LOG_LEVEL": "WARNING"}
    async with app_server(env, log) as (process, port):
        for _ in range(20):  # warm up: imports, first-call paths
            await handshake(port, "/ws", {})
        for name, (target, headers) in CASES.items():
            await measure(name, process.pid, port, target, headers, count)

    log.clear()
    env = {"MODEL_PROVIDER": "echo", "MAX_SESSIONS": "1", "LOG_LEVEL": "WARNING"}
    async with app_server(env, log) as (process, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # the one session
        writer.write(upgrade(port, "/ws", {}))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        for _ in range(20):
            await handshake(port, "/ws", {})
        await measure("refused: at capacity (503)", process.pid, port, "/ws", {}, count)
        async with httpx.AsyncClient() as client:
            refused = (await client.get(f"http://127.0.0.1:{port}/health")).json()["refused"]
        writer.close()
        await writer.wait_closed()
    lines = sum("refused: reason=capacity" in line for line in log)
    errors = sum("ERROR" in line for line in log)
    print(f"{'':32} /health refused {refused}; {lines} refusal log line(s), {errors} ERROR line(s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="handshakes per case (default 200)")
    asyncio.run(main(parser.parse_args().count))
