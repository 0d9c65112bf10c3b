"""A graceful drain, timed: sessions mid-response when `python -m app` gets SIGTERM.

Each client streams real-time audio to the echo model, which answers with the same audio
in one response that stays open while audio keeps coming and ends 0.5 s after it stops,
as a spoken answer would. Once every client is in its response the server gets SIGTERM
(t = 0); client i then speaks on for `--speak` + i * `--spread` seconds and stops. While
they finish, `/ready` and a new handshake are probed. Reported, from t = 0: when `/ready`
turned 503, the handshake's status, each client's `response_complete`, its
`connection_close` reason and close code, whether every byte of audio it sent came back
(nothing cut), and when the process exited, with its exit code.

    .venv/bin/python -m bench.drain --clients 20
    .venv/bin/python -m bench.drain --clients 20 --signals 2   # a second SIGTERM at --second
    .venv/bin/python -m bench.drain --clients 20 --workers 2   # SIGTERM to the supervisor
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import time
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench._server import app_server

FRAME = 0.02  # seconds of audio per frame
RATE = 16000
PCM = b"\x10\x00" * int(RATE * FRAME)  # a quiet constant signal, 20 ms


@dataclass
class Client:
    index: int
    sent: int = 0
    received: int = 0
    events: dict[str, float] = field(default_factory=dict)  # name -> monotonic time
    close_reason: str | None = None
    close_code: int | None = None
    after_close: int = 0  # messages after connection_close (should be none)


async def talk(client: Client, port: int, in_response: asyncio.Event, stop_at: asyncio.Future[float]) -> None:
    url = f"ws://127.0.0.1:{port}/ws?audio=binary&output_sample_rate={RATE}"
    async with connect(url, max_size=None) as ws:
        reader = asyncio.create_task(listen(client, ws, in_response))
        begin = time.monotonic()
        n = 0
        while not stop_at.done() or time.monotonic() < stop_at.result():
            delay = begin + n * FRAME - time.monotonic()  # real time, on an absolute schedule
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await ws.send(PCM)
            except ConnectionClosed:
                break
            client.sent += len(PCM)
            n += 1
        await reader


async def listen(client: Client, ws: ClientConnection, in_response: asyncio.Event) -> None:
    try:
        async for message in ws:
            if isinstance(message, bytes):
                client.received += len(message)
                continue
            kind = json.loads(message)["type"]
            now = time.monotonic()
            if client.close_reason is not None:
                client.after_close += 1
            if kind == "response_start":
                client.events.setdefault("response_start", now)
                in_response.set()
            elif kind == "response_complete":
                client.events["response_complete"] = now
            elif kind == "connection_close":
                client.close_reason = json.loads(message)["reason"]
                client.events["connection_close"] = now
    except ConnectionClosed:
        pass
    client.events["closed"] = time.monotonic()
    client.close_code = ws.close_code


async def probe(port: int, signalled: float) -> dict[str, str]:
    """What /ready answered after the signal (and when it was asked), /ping, and what a
    new handshake got; a server that stopped listening refuses the connection instead."""
    result: dict[str, str] = {}
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            while "ready" not in result:
                asked = time.monotonic()
                response = await http.get(f"http://127.0.0.1:{port}/ready")
                if response.status_code == 503:
                    result["ready"] = f"503 {response.json()} (asked at t={asked - signalled:.3f}s)"
                else:
                    await asyncio.sleep(0.005)
            result["ping"] = (await http.get(f"http://127.0.0.1:{port}/ping")).json()["status"]
        async with connect(f"ws://127.0.0.1:{port}/ws"):
            result["handshake"] = "HTTP 101"
    except InvalidStatus as exc:
        result["handshake"] = f"HTTP {exc.response.status_code}"
    except (OSError, httpx.TransportError) as exc:  # the listener is closed, or closing
        for key in ("ready", "ping", "handshake"):
            result.setdefault(key, f"no answer ({type(exc).__name__})")
    return result


async def run(args: argparse.Namespace) -> None:
    log: list[str] = []
    # The echo model at the client's rate: no resampling, so every byte sent comes back.
    env = {
        "MODEL_PROVIDER": "echo",
        "OUTPUT_SAMPLE_RATE": str(RATE),
        "DRAIN_TIMEOUT": str(args.drain_timeout),
        "LOG_LEVEL": "INFO",
        "WORKERS": str(args.workers),
    }
    async with app_server(env, log) as (process, port):
        clients = [Client(i) for i in range(args.clients)]
        starts = [asyncio.Event() for _ in clients]
        loop = asyncio.get_running_loop()
        stop_ats: list[asyncio.Future[float]] = [loop.create_future() for _ in clients]
        tasks = [
            asyncio.create_task(talk(c, port, e, f))
            for c, e, f in zip(clients, starts, stop_ats, strict=True)
        ]
        async with asyncio.timeout(30):
            await asyncio.gather(*(e.wait() for e in starts))
        await asyncio.sleep(args.lead)  # well into every response
        process.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        for client, future in zip(clients, stop_ats, strict=True):
            future.set_result(t0 + args.speak + client.index * args.spread)
        probed = asyncio.create_task(probe(port, t0))
        if args.signals > 1:
            await asyncio.sleep(args.second)
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(args.drain_timeout + 30):
            await asyncio.gather(*tasks)
            probes = await probed
            exit_code = await asyncio.to_thread(process.wait)
        exited = time.monotonic() - t0
    report(args, clients, t0, probes, exit_code, exited)
    if args.show_log:
        print("".join(line for line in log if "session started" not in line))


def report(
    args: argparse.Namespace,
    clients: list[Client],
    t0: float,
    probes: dict[str, str],
    exit_code: int,
    exited: float,
) -> None:
    print(f"{len(clients)} sessions mid-response, SIGTERM at t=0 (DRAIN_TIMEOUT={args.drain_timeout:g})")
    print(f"  /ready: {probes['ready']}; /ping: {probes['ping']}")
    print(f"  new handshake during the drain: {probes['handshake']}")
    print("  client  stops-speaking  response_complete  connection_close  closed  code  reason", end="")
    print("           audio back")
    for c in clients:
        stop = args.speak + c.index * args.spread

        def at(name: str, events: dict[str, float] = c.events) -> str:
            return f"{events[name] - t0:6.3f}" if name in events else "     -"

        whole = "all" if c.received == c.sent else f"{c.received}/{c.sent}"
        print(
            f"  {c.index:6d}  {stop:13.2f}  {at('response_complete'):>17}  {at('connection_close'):>16}"
            f"  {at('closed'):>6}  {c.close_code}  {c.close_reason or '-':<15}  {whole}"
            + (f"  ({c.after_close} after close)" if c.after_close else "")
        )
    complete = [c.events["response_complete"] - t0 for c in clients if "response_complete" in c.events]
    closes = [c.events["closed"] - t0 for c in clients if "closed" in c.events]
    gaps = [
        c.events["connection_close"] - c.events["response_complete"]
        for c in clients
        if "connection_close" in c.events and "response_complete" in c.events
    ]
    print(
        f"  responses completed: {len(complete)}/{len(clients)}; whole audio back: "
        f"{sum(c.received == c.sent for c in clients)}/{len(clients)}"
    )
    if complete:
        print(f"  response_complete t={min(complete):.3f}..{max(complete):.3f}s")
    if closes:
        print(f"  closes t={min(closes):.3f}..{max(closes):.3f}s")
    if gaps:
        print(
            f"  response_complete -> connection_close: median {statistics.median(gaps) * 1000:.1f} ms, "
            f"max {max(gaps) * 1000:.1f} ms"
        )
    print(f"  process exited at t={exited:.3f}s with code {exit_code}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--lead", type=float, default=0.5, help="seconds into the responses before SIGTERM")
    parser.add_argument(
        "--speak", type=float, default=1.0, help="seconds the first client speaks on after it"
    )
    parser.add_argument("--spread", type=float, default=0.05, help="each next client speaks this much longer")
    parser.add_argument("--signals", type=int, choices=(1, 2), default=1)
    parser.add_argument("--second", type=float, default=0.5, help="seconds after the first, for --signals 2")
    parser.add_argument("--workers", type=int, default=1, help="processes (WORKERS)")
    parser.add_argument("--show-log", action="store_true", help="print the server's log after the table")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
