"""The soak of bench/load.py (`make soak`): sessions connecting, talking and leaving at a
steady rate for a while, and whether the server gives back what they took.

`SOAK_SESSIONS` slots each run one session after another: connect, stream real-time audio
for `TALK` seconds (binary and JSON audio in turn), wait for the replies, send
{"type":"end"} and expect `connection_close` and close 1000; the next session of the slot
starts `LIFETIME` seconds after the previous one did. The slots are staggered, so
sessions arrive at SOAK_SESSIONS / LIFETIME a second and about SOAK_SESSIONS are open.

The server is ours (production settings, MODEL_PROVIDER=echo at equal rates) run by
bench/_counted_app.py, which adds only a task count on SIGUSR1: the app has no endpoint
for it. It is warmed up as for the steps, then its idle state is taken. Every
SAMPLE_EVERY seconds: its CPU, RSS, threads and file descriptors (/proc) and open
sessions (/health). Reported: RSS after the warm-up (the first WARMUP_FRACTION of the
run) against RSS at the end of the steady load (one LIFETIME before the end), tasks,
threads and file descriptors once idle after the run against idle before it, and every
error.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench._clients import NEVER, Client, Run, connect, ms, sleep_until, ticker
from bench._runs import OURS_ENV, QUERY, SERVER_CPU, Target, generate
from bench._server import app_server, cpu_seconds, memory_mb, wait_idle
from bench._stats import spread

SOAK_SESSIONS = 100
LIFETIME = 10.0
TALK = 8.0
REPLY_WAIT = 1.0
SAMPLE_EVERY = 5.0
WARMUP_FRACTION = 0.2
TASKS = re.compile(r"bench-tasks (\d+)")
Sample = dict[str, Any]


async def sessions_coming_and_going(spec: dict[str, Any]) -> dict[str, Any]:
    """The generator's side (run by bench/_loadgen.py): the slots, for `seconds`."""
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
    }


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


async def _tasks(process: subprocess.Popen[str], log: list[str]) -> int | None:
    """The server's asyncio tasks, from the line bench/_counted_app.py writes on SIGUSR1."""
    seen = len(log)
    process.send_signal(signal.SIGUSR1)
    async with asyncio.timeout(5):
        while True:
            for line in log[seen:]:
                if match := TASKS.search(line):
                    return int(match.group(1))
            await asyncio.sleep(0.05)


async def _sample(pid: int, port: int, http: httpx.AsyncClient, t: float) -> Sample:
    health = (await http.get(f"http://127.0.0.1:{port}/health", headers={"connection": "close"})).json()
    return {
        "t": round(t, 1),
        "cpu_s": round(cpu_seconds(pid), 2),
        "rss_mb": round(memory_mb(pid)["VmRSS"], 1),
        "threads": _threads(pid),
        "fds": _fds(pid),
        "sessions": health["sessions"],
    }


async def _idle(process: subprocess.Popen[str], port: int, log: list[str], http: httpx.AsyncClient) -> Sample:
    await wait_idle(port)
    return await _sample(process.pid, port, http, 0.0) | {"tasks": await _tasks(process, log)}


async def soak(seconds: float) -> dict[str, Any]:
    log: list[str] = []
    async with (
        app_server(OURS_ENV, log, module="bench._counted_app", cpus=SERVER_CPU) as (process, port),
        httpx.AsyncClient(timeout=5) as http,
    ):
        target = Target("ours", process.pid, port)
        await target.warm_up()
        before = await _idle(process, port, log, http)
        spec = {
            "mode": "soak",
            "urls": {audio: target.spec(audio)["url"] for audio in QUERY},
            "sessions": SOAK_SESSIONS,
            "lifetime": LIFETIME,
            "talk": TALK,
            "seconds": seconds,
        }
        generator = asyncio.create_task(generate(spec))
        samples, started = [], time.monotonic()
        while not generator.done():
            samples.append(await _sample(process.pid, port, http, time.monotonic() - started))
            await asyncio.wait([generator], timeout=SAMPLE_EVERY)
        after = await _idle(process, port, log, http)
    for previous, sample in itertools.pairwise(samples):  # the server's CPU over each interval
        sample["cpu_pct"] = round(
            100 * (sample["cpu_s"] - previous["cpu_s"]) / (sample["t"] - previous["t"]), 1
        )
    # Steady state: from a whole session lifetime in (every slot busy) until the last
    # lifetime, when slots start to finish.
    warm = next((s for s in samples if s["t"] >= max(LIFETIME, seconds * WARMUP_FRACTION)), None)
    steady = [s for s in samples if s["t"] <= seconds - LIFETIME]
    last = steady[-1] if steady else None
    growth = round(100 * (last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"], 1) if warm and last else None
    return {
        "seconds": seconds,
        "sessions": SOAK_SESSIONS,
        "lifetime_s": LIFETIME,
        "talk_s": TALK,
        "idle_before": before,
        "after_warmup": warm,
        "end_of_load": last,
        "idle_after": after,
        "rss_growth_pct": growth,
        "generator": generator.result(),
        "samples": samples,
        "server_log_errors": [line.rstrip() for line in log if " ERROR " in line][:20],
    }


def _cpu(samples: list[Sample]) -> str:
    busy = [s["cpu_pct"] for s in samples if "cpu_pct" in s and s["sessions"]]
    return f"{sum(busy) / len(busy):.0f} / {max(busy):.0f}" if busy else "-"


def report(result: dict[str, Any]) -> str:
    before, after = result["idle_before"], result["idle_after"]
    warm, last = result["after_warmup"], result["end_of_load"]
    rows = [
        ("seconds, slots, lifetime s", f"{result['seconds']}, {result['sessions']}, {result['lifetime_s']}"),
        ("RSS MB after warm-up / end of load", f"{warm and warm['rss_mb']} / {last and last['rss_mb']}"),
        ("RSS growth %", result["rss_growth_pct"]),
        ("server CPU % under load, mean / max", _cpu(result["samples"])),
        ("RSS MB idle before / after", f"{before['rss_mb']} / {after['rss_mb']}"),
        ("tasks idle before / after", f"{before['tasks']} / {after['tasks']}"),
        ("threads idle before / after", f"{before['threads']} / {after['threads']}"),
        ("fds idle before / after", f"{before['fds']} / {after['fds']}"),
    ]
    generator = result["generator"]
    for key in ("counts", "refused", "connect_errors", "server_errors", "unexpected_closes"):
        rows.append((key.replace("_", " "), json.dumps(generator[key])))
    rows.append(("set-up ms", json.dumps(generator["setup_ms"])))
    rows.append(("round trip ms", json.dumps(generator["rtt_ms"])))
    rows.append(("server ERROR lines", len(result["server_log_errors"])))
    return "| soak | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
