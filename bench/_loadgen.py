"""The load generator of bench/load.py: a process of its own, pinned by load.py to the core
the server is not on, so that its work never counts as the server's.

    python -m bench._loadgen '<spec as JSON>'      (prints its result as one JSON line)

Clients (bench/_clients.py) are picows WebSockets on uvloop. Each sends one 640-byte
frame (20 ms of 16 kHz PCM16) every 20 ms, binary or JSON, with the phases of all clients
spread evenly over the 20 ms; one timer loop sends every frame that is due, so the
generator stays cheap at hundreds of clients.

Modes (`spec["mode"]`):
- `step`: open `sessions` clients at `connect_rate` a second, each streaming as soon as
  its session is set up (its `ready_type` message), or all from the end of the ramp with
  `stream_during_ramp` false (to tell a server that cannot carry N sessions from one
  that the ramp's set-up work tipped over); after `settle` seconds measure for `window`
  seconds (the server's CPU from /proc/<server_pid>/stat, its RSS, round trips of the
  frames sent in the window); keep streaming for `drain` seconds so late replies still
  come back, then close.
- `probe`: open `sessions` clients at `connect_rate` without streaming, to measure the
  server's CPU per connection set-up (and per close) on its own.
- `soak`: `sessions` slots each run one session after another for `seconds`, each
  session talking `talk` seconds and the next starting `lifetime` seconds after it
  (see bench/_soak.py), then ending with {"type":"end"}.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from typing import Any

import uvloop

from bench._clients import NEVER, Client, Run, connect, ms, sleep_until, ticker
from bench._server import cpu_seconds, memory_mb
from bench._stats import spread

REPLY_WAIT = 1.0  # after its last frame, how long a soak session waits for the replies


async def open_paced(run: Run, spec: dict[str, Any], slots: list[Client | None], stream: bool) -> float:
    """Opens a client per slot, `connect_rate` a second; returns the seconds it took."""
    started = time.perf_counter_ns()
    every = 1e9 / spec["connect_rate"]

    async def open_one(i: int) -> None:
        await sleep_until(started + int(i * every))
        client = await connect(run, spec["url"], i, spec["binary"], spec["ready_type"])
        if client is not None:
            client.active = stream
            slots[i] = client

    async with asyncio.TaskGroup() as tasks:
        for i in range(len(slots)):
            tasks.create_task(open_one(i))
    return (time.perf_counter_ns() - started) / 1e9


def common(run: Run, clients: list[Client]) -> dict[str, Any]:
    return {
        "sessions_open": len(clients),
        "refused": dict(run.refused),
        "connect_errors": dict(run.connect_errors),
        "setup_ms": spread((ms(ns) for ns in run.setups), 1),
        "server_errors": dict(run.server_errors),
        "unexpected_closes": dict(run.unexpected_closes),
        "close_timeouts": run.close_timeouts,
    }


async def step(spec: dict[str, Any]) -> dict[str, Any]:
    run = Run()
    pid = spec["server_pid"]
    slots: list[Client | None] = [None] * spec["sessions"]
    sender = asyncio.create_task(ticker(run, slots))
    streaming = spec.get("stream_during_ramp", True)
    ramp = await open_paced(run, spec, slots, stream=streaming)
    clients = [c for c in slots if c is not None]
    for client in clients:
        client.active = True
    run.window_start = time.perf_counter_ns() + int(spec["settle"] * 1e9)
    run.window_end = run.window_start + int(spec["window"] * 1e9)
    await sleep_until(run.window_start)
    cpu, own = cpu_seconds(pid), os.times()
    await sleep_until(run.window_end)
    cpu, own_end = cpu_seconds(pid) - cpu, os.times()
    rss = memory_mb(pid)["VmRSS"]
    await asyncio.sleep(spec["drain"])
    run.stopping = True
    await sender
    async with asyncio.TaskGroup() as tasks:
        for client in clients:
            tasks.create_task(client.close())
    window = spec["window"]
    trackers = [c.tracker for c in clients]
    return common(run, clients) | {
        "ramp_s": round(ramp, 2),
        "window_s": window,
        "sent": run.sent,
        "received": run.received,
        "late": run.late,
        "replies_in_window": run.replies,
        "rtt_ms": spread(ms(ns) for ns in run.rtts),
        "gaps": sum(t.gaps for t in trackers),
        "duplicates": sum(t.duplicates for t in trackers),
        "crossed": run.crossed,
        "server_cpu_s": round(cpu, 3),
        "server_rss_mb": round(rss, 1),
        "generator_cpu_pct": round(100 * (own_end.user + own_end.system - own.user - own.system) / window, 1),
        "send_lateness_ms": spread(ms(ns) for ns in run.lateness),
    }


async def probe(spec: dict[str, Any]) -> dict[str, Any]:
    run = Run()
    pid = spec["server_pid"]
    slots: list[Client | None] = [None] * spec["sessions"]
    before = cpu_seconds(pid)
    await open_paced(run, spec, slots, stream=False)
    await asyncio.sleep(spec["settle"])  # work the server does after the ready message
    opened_cpu = cpu_seconds(pid)
    clients = [c for c in slots if c is not None]
    async with asyncio.TaskGroup() as tasks:
        for client in clients:
            tasks.create_task(client.close())
    await asyncio.sleep(spec["settle"])  # the server's teardown after the socket closed
    closed_cpu = cpu_seconds(pid)
    opened = max(1, len(clients))
    return common(run, clients) | {
        "setup_cpu_ms": round((opened_cpu - before) * 1e3 / opened, 3),
        "close_cpu_ms": round((closed_cpu - opened_cpu) * 1e3 / opened, 3),
    }


async def soak(spec: dict[str, Any]) -> dict[str, Any]:
    """Sessions coming and going (see bench/_soak.py) for `seconds`."""
    run = Run()
    run.window_start, run.window_end = 0, NEVER  # every frame counts
    slots: list[Client | None] = [None] * spec["sessions"]
    counts: collections.Counter[str] = collections.Counter()
    sender = asyncio.create_task(ticker(run, slots))
    life, talk = int(spec["lifetime"] * 1e9), int(spec["talk"] * 1e9)
    started = time.perf_counter_ns()
    end = started + int(spec["seconds"] * 1e9)

    async def slot(index: int) -> None:
        offset = started + life * index // len(slots)
        for turn in range(int(spec["seconds"] * 1e9 // life) + 1):
            begin = offset + turn * life
            if begin + life > end:
                return
            await sleep_until(begin)
            mode = "binary" if (index + turn) % 2 == 0 else "json"
            counts["attempted"] += 1
            client = await connect(run, spec["urls"][mode], index, mode == "binary", "session_start")
            if client is None:
                continue
            slots[index] = client
            client.active = True
            await sleep_until(begin + talk)
            client.stop_sending()
            try:
                async with asyncio.timeout(REPLY_WAIT):
                    await client.caught_up.wait()
            except TimeoutError:
                counts["replies missing after talking"] += 1
            slots[index] = None
            counts["frames sent"] += client.seq
            counts["frames lost"] += client.tracker.outstanding(client.seq)
            counts["gaps"] += client.tracker.gaps
            counts["duplicates"] += client.tracker.duplicates
            await client.close(end=True)
            ended = client.session_ended and client.close_code == 1000
            counts["ended cleanly" if ended else f"ended badly: close {client.close_code}"] += 1

    async with asyncio.TaskGroup() as tasks:
        for index in range(len(slots)):
            tasks.create_task(slot(index))
    run.stopping = True
    await sender
    return {
        "counts": dict(counts),
        "refused": dict(run.refused),
        "connect_errors": dict(run.connect_errors),
        "server_errors": dict(run.server_errors),
        "unexpected_closes": dict(run.unexpected_closes),
        "close_timeouts": run.close_timeouts,
        "crossed": run.crossed,
        "setup_ms": spread((ms(ns) for ns in run.setups), 1),
        "rtt_ms": spread(ms(ns) for ns in run.rtts),
        "late": run.late,
        "send_lateness_ms": spread(ms(ns) for ns in run.lateness),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    modes = {"step": step, "probe": probe, "soak": soak}
    result = uvloop.run(modes[spec["mode"]](spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
