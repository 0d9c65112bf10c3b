"""Clients that never read, against a real `python -m app` on loopback (echo model), and
what they do to a normal session beside them.

An observer session sends an app-level `ping` every 20 ms and times each `pong`: alone
for a few seconds (the baseline), then while the attackers run. The attackers connect
with tiny socket buffers (SO_RCVBUF 4 KiB) and never read:

- `audio`: each streams 100 ms audio frames as fast as the server takes them (the echo
  model answers every frame with audio nobody reads);
- `ping`: one client sends WebSocket ping frames as fast as it can (the server owes a
  pong for each);
- `silent`: connections that never send a byte (no handshake at all).

Every second the server's RSS, open file descriptors and /health sessions are sampled.
At the end the server is stopped with SIGTERM while the attackers are still connected,
and the time it takes to exit is reported (killed after 15 s).

    .venv/bin/python -m bench.slow_clients --scenario audio --clients 20 --seconds 20
    .venv/bin/python -m bench.slow_clients --scenario ping --seconds 20
    .venv/bin/python -m bench.slow_clients --scenario silent --clients 300 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import time
from collections.abc import Callable

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench._server import app_server, handshake, memory_mb

PING_EVERY = 0.02
BASELINE_SECONDS = 3.0
TINY_BUFFER = 4096
AUDIO_FRAME = bytes(3200)  # 100 ms of 16 kHz PCM16
STOP_WAIT = 15.0
CLOSED = re.compile(r"session closed: reason=(\w+)")


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame, masked with a zero key (so the payload goes as is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


async def non_reader(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket whose receive buffer is tiny, after its handshake."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_BUFFER)  # before connect: sets the window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await handshake(port, sock)


async def flood(writer: asyncio.StreamWriter, data: bytes, until: float) -> str:
    """Writes `data` again and again until `until` (monotonic); never reads."""
    try:
        while time.monotonic() < until:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), max(0.01, until - time.monotonic()))
    except TimeoutError:
        return "still open"
    except ConnectionError:
        return "cut by the server"
    return "still open"


async def silent(port: int, until: float) -> str:
    """A connection that sends nothing; whether the server closed it before `until`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.wait_for(reader.read(), max(0.01, until - time.monotonic()))
    except TimeoutError:
        return "still open"
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()
    return "cut by the server"


async def observe(ws: ClientConnection, seconds: float) -> list[tuple[float, float]]:
    """Round trips of app-level pings: (seconds since the start, ms)."""
    rtts: list[tuple[float, float]] = []
    started = time.monotonic()
    until = started + seconds
    ping = json.dumps({"type": "ping"})
    while (now := time.monotonic()) < until:
        sent = time.perf_counter()
        await ws.send(ping)
        while json.loads(await ws.recv())["type"] != "pong":
            pass
        rtts.append((now - started, (time.perf_counter() - sent) * 1000))
        await asyncio.sleep(max(0.0, PING_EVERY - (time.monotonic() - now)))
    return rtts


def percentiles(timed: list[tuple[float, float]]) -> dict[str, float]:
    rtts = [rtt for _, rtt in timed]
    cuts = statistics.quantiles(rtts, n=100, method="inclusive")
    return {"p50": round(cuts[49], 1), "p99": round(cuts[98], 1), "max": round(max(rtts), 1)}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def sample(pid: int, port: int, seconds: float, out: list[dict[str, float]]) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        started = time.monotonic()
        while (t := time.monotonic() - started) < seconds:
            # A connection per request (closed before the fds are counted), not one kept alive.
            response = await client.get(f"http://127.0.0.1:{port}/health", headers={"connection": "close"})
            health = response.json()
            out.append(
                {
                    "t": round(t, 1),
                    "rss_mb": round(memory_mb(pid)["VmRSS"], 1),
                    "fds": open_fds(pid),
                    "sessions": health["sessions"],
                }
            )
            await asyncio.sleep(1.0)


def stop_seconds(process: subprocess.Popen[str]) -> str:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        return f"> {STOP_WAIT:g} (killed)"
    return f"{time.monotonic() - started:.1f}"


async def run(args: argparse.Namespace) -> dict[str, object]:
    env = {"MODEL_PROVIDER": "echo", "LOG_LEVEL": "INFO"}
    env |= dict(item.split("=", 1) for item in args.env)
    samples: list[dict[str, float]] = []
    log: list[str] = []
    async with app_server(env, log) as (process, port):
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            await ws.recv()  # session_start
            baseline = await observe(ws, BASELINE_SECONDS)
            fds_before = open_fds(process.pid)
            until = time.monotonic() + args.seconds
            if args.scenario == "silent":
                attackers = []
                floods = [asyncio.create_task(silent(port, until)) for _ in range(args.clients)]
            else:
                attackers = [await non_reader(port) for _ in range(args.clients)]
                data = frame(0x2, AUDIO_FRAME) if args.scenario == "audio" else frame(0x9, bytes(125)) * 64
                floods = [asyncio.create_task(flood(w, data, until)) for _, w in attackers]
            sampler = asyncio.create_task(sample(process.pid, port, args.seconds, samples))
            during = await observe(ws, args.seconds)
            outcomes = await asyncio.gather(*floods)
            await sampler
        stopped = stop_seconds(process)
        for _, writer in attackers:
            writer.transport.abort()
    last = samples[-1]
    return {
        "scenario": args.scenario,
        "attackers": args.clients,
        "settings": " ".join(args.env) or "defaults",
        "observer p50/p99/max ms, alone": fmt(percentiles(baseline)),
        "observer p50/p99/max ms, during": fmt(percentiles(during)),
        "attackers cut by the server": sum(o == "cut by the server" for o in outcomes),
        "peak RSS MB": max(s["rss_mb"] for s in samples),
        "server fds before / at the end": f"{fds_before} / {last['fds']}",
        "sessions at the end (/health)": last["sessions"],
        "first second with the attackers' sessions gone": first(samples, lambda s: s["sessions"] <= 1),
        "first second with their fds released": first(samples, lambda s: s["fds"] <= fds_before),
        "graceful stop, seconds": stopped,
        "sessions closed, by reason": dict(collections.Counter(CLOSED.findall("".join(log)))),
        "worst round trip at, seconds into the attack": round(max(during, key=lambda x: x[1])[0], 1),
    }


def fmt(p: dict[str, float]) -> str:
    return f"{p['p50']} / {p['p99']} / {p['max']}"


def first(samples: list[dict[str, float]], test: Callable[[dict[str, float]], bool]) -> str:
    return next((str(s["t"]) for s in samples if test(s)), "never")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scenario", choices=("audio", "ping", "silent"), default="audio")
    parser.add_argument("--clients", type=int, default=0, help="default: audio 20, ping 1, silent 300")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--env", nargs="*", default=[], help="server settings, KEY=VALUE")
    args = parser.parse_args()
    args.clients = args.clients or {"audio": 20, "ping": 1, "silent": 300}[args.scenario]
    result = asyncio.run(run(args))
    print("| metric | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
