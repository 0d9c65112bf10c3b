"""The soak of bench/load.py (`make soak`): sessions connecting, talking and leaving at a
steady rate for a while, and whether the server gives back what they took.

`SOAK_SESSIONS` slots each run one session after another: connect, stream real-time audio
for `TALK` seconds (binary and JSON audio in turn), wait for the replies, send
{"type":"end"} and expect `connection_close` and close 1000; the next session of the slot
starts `LIFETIME` seconds after the previous one did. The slots are staggered, so
sessions arrive at SOAK_SESSIONS / LIFETIME a second and about SOAK_SESSIONS are open.

The server is ours (production settings, MODEL_PROVIDER=echo at equal rates) run by
bench/_instrumented_app.py, which adds only a report on SIGUSR1 (asyncio tasks, event
loop lag): the app has no endpoint for either. It is warmed up as for the steps, then
its idle state is taken. Every SAMPLE_EVERY seconds: its CPU, RSS, threads and file
descriptors (/proc), open sessions (/health), tasks and loop lag. Reported: RSS after
the warm-up (the first WARMUP_FRACTION of the run) against RSS at the end of the steady
load (one LIFETIME before the end) and over its second half (a leak keeps growing; an
allocator's high-water mark does not); tasks, threads and file descriptors once idle
after the run against idle before it; the worst loop lag; and every error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench._runs import OURS_ENV, QUERY, SERVER_CPU, Target, generate
from bench._server import app_server, cpu_seconds, memory_mb, wait_idle

SOAK_SESSIONS = 100
LIFETIME = 10.0
TALK = 8.0
SAMPLE_EVERY = 5.0
WARMUP_FRACTION = 0.2
STATE = re.compile(r"bench-state tasks=(\d+) lag_max_ms=(\S+) lags_over_50ms=(\S+)")
Sample = dict[str, Any]


class Watched:
    """The server under soak, read from outside: /proc, /health, and the line
    bench/_instrumented_app.py writes on SIGUSR1."""

    def __init__(self, process: subprocess.Popen[str], port: int, log: list[str], http: httpx.AsyncClient):
        self.process, self.port, self.log, self.http = process, port, log, http
        self.started = time.monotonic()

    async def state(self) -> dict[str, Any]:
        seen = len(self.log)
        self.process.send_signal(signal.SIGUSR1)
        async with asyncio.timeout(5):
            while True:  # another process's output: polled
                for line in self.log[seen:]:
                    if match := STATE.search(line):
                        tasks, lag, stalls = match.groups()
                        return {
                            "tasks": int(tasks),
                            "lag_max_ms": _number(lag),
                            "lags_over_50ms": _number(stalls),
                        }
                await asyncio.sleep(0.05)

    async def sample(self) -> Sample:
        health = await self.http.get(f"http://127.0.0.1:{self.port}/health", headers={"connection": "close"})
        at = {"t": round(time.monotonic() - self.started, 1), "sessions": health.json()["sessions"]}
        return at | _proc(self.process.pid) | await self.state()

    async def idle(self) -> Sample:
        await wait_idle(self.port)
        return await self.sample()


def _proc(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:"))
    return {
        "cpu_s": round(cpu_seconds(pid), 2),
        "rss_mb": round(memory_mb(pid)["VmRSS"], 1),
        "threads": int(threads),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


def _number(text: str) -> float | None:
    return None if text == "-" else float(text)


async def soak(seconds: float) -> dict[str, Any]:
    log: list[str] = []
    async with (
        app_server(OURS_ENV, log, module="bench._instrumented_app", cpus=SERVER_CPU) as (process, port),
        httpx.AsyncClient(timeout=5) as http,
    ):
        target = Target("ours", process.pid, port)
        await target.warm_up()
        server = Watched(process, port, log, http)
        await server.state()  # starts the lag probe
        before = await server.idle()
        spec = {
            "mode": "soak",
            "urls": {audio: target.spec(audio)["url"] for audio in QUERY},
            "sessions": SOAK_SESSIONS,
            "lifetime": LIFETIME,
            "talk": TALK,
            "seconds": seconds,
        }
        server.started = time.monotonic()
        generator = asyncio.create_task(generate(spec))
        samples = []
        while not generator.done():
            samples.append(await server.sample())
            await asyncio.wait([generator], timeout=SAMPLE_EVERY)
        after = await server.idle()
    return summarise(seconds, samples, before, after) | {
        "generator": generator.result(),
        "samples": samples,
        "server_log_errors": [line.rstrip() for line in log if " ERROR " in line][:20],
    }


def summarise(seconds: float, samples: list[Sample], before: Sample, after: Sample) -> dict[str, Any]:
    for previous, sample in itertools.pairwise(samples):  # the server's CPU over each interval
        busy = (sample["cpu_s"] - previous["cpu_s"]) / (sample["t"] - previous["t"])
        sample["cpu_pct"] = round(100 * busy, 1)
    # Steady state: from a whole session lifetime in (every slot busy) until the last
    # lifetime, when slots start to finish.
    steady = [s for s in samples if max(LIFETIME, seconds * WARMUP_FRACTION) <= s["t"] <= seconds - LIFETIME]
    warm, last = (steady[0], steady[-1]) if steady else (None, None)
    middle = steady[len(steady) // 2] if steady else None

    def growth(a: Sample | None, b: Sample | None) -> float | None:
        return round(100 * (b["rss_mb"] - a["rss_mb"]) / a["rss_mb"], 1) if a and b else None

    lags = [s["lag_max_ms"] for s in samples if s["lag_max_ms"] is not None]
    return {
        "seconds": seconds,
        "sessions": SOAK_SESSIONS,
        "lifetime_s": LIFETIME,
        "talk_s": TALK,
        "idle_before": before,
        "after_warmup": warm,
        "end_of_load": last,
        "idle_after": after,
        "rss_growth_pct": growth(warm, last),
        # Still growing at the end (a leak), or grown to a plateau early on?
        "rss_growth_second_half_pct": growth(middle, last),
        "loop_lag_max_ms": max(lags, default=None),
        "loop_lags_over_50ms": sum(s["lags_over_50ms"] or 0 for s in samples),
    }


def _pair(result: dict[str, Any], key: str) -> str:
    if key == "rss_growth":
        return f"{result['rss_growth_pct']} / {result['rss_growth_second_half_pct']}"
    return f"{result['loop_lag_max_ms']} / {result['loop_lags_over_50ms']}"


def _cpu(samples: list[Sample]) -> str:
    busy = [s["cpu_pct"] for s in samples if "cpu_pct" in s and s["sessions"]]
    return f"{sum(busy) / len(busy):.0f} / {max(busy):.0f}" if busy else "-"


def report(result: dict[str, Any]) -> str:
    before, after = result["idle_before"], result["idle_after"]
    warm, last = result["after_warmup"], result["end_of_load"]
    rows: list[tuple[str, object]] = [
        ("seconds, slots, lifetime s", f"{result['seconds']}, {result['sessions']}, {result['lifetime_s']}"),
        ("RSS MB after warm-up / end of load", f"{warm and warm['rss_mb']} / {last and last['rss_mb']}"),
        ("RSS growth %, all / second half of the steady load", _pair(result, "rss_growth")),
        ("server loop late: worst ms / times over 50 ms", _pair(result, "loop_lag")),
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
    rows.append(("generator send lateness ms", json.dumps(generator["send_lateness_ms"])))
    rows.append(("server ERROR lines", len(result["server_log_errors"])))
    return "| soak | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
