"""What bench/load.py and bench/_soak.py share: the servers under test, pinned to core 0,
and runs of the load generator (bench/_loadgen.py) against them, pinned to core 1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from bench import _stats
from bench._server import ROOT, memory_mb, wait_idle

SERVER_CPU, GENERATOR_CPU = "0", "1"
OURS_ENV = {"MODEL_PROVIDER": "echo", "INPUT_SAMPLE_RATE": "16000", "OUTPUT_SAMPLE_RATE": "16000"}
# ready_type: the message that ends a session's set-up (ours then has its model connected).
SERVERS = {"ours": ("app", "connection_start"), "baseline": ("bench.baseline", "session_start")}
QUERY = {"binary": "?audio=binary", "json": ""}
PROBE_SESSIONS, PROBE_RATE = 200, 200.0


@dataclass(frozen=True)
class Plan:
    name: str
    steps: tuple[int, ...]
    window: float
    settle: float
    drain: float
    connect_rate: float


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of bench/_loadgen.py on the generator's core; its result."""
    command = [sys.executable, "-m", "bench._loadgen", json.dumps(spec)]
    process = await asyncio.create_subprocess_exec(
        "taskset", "-c", GENERATOR_CPU, *command, cwd=ROOT, stdout=subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode}); spec {spec}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


class Target:
    """A running server, and what a run against it needs."""

    def __init__(self, name: str, pid: int, port: int) -> None:
        self.name, self.pid, self.port = name, pid, port
        self.ready_type = SERVERS[name][1]
        self.idle_rss_mb = 0.0

    def spec(self, audio: str, **fields: Any) -> dict[str, Any]:
        return {
            "url": f"ws://127.0.0.1:{self.port}/ws{QUERY[audio]}",
            "binary": audio == "binary",
            "server_pid": self.pid,
            "ready_type": self.ready_type,
        } | fields

    async def step(self, plan: Plan, mode: str, sessions: int) -> dict[str, Any]:
        spec = self.spec(
            mode, mode="step", sessions=sessions, connect_rate=plan.connect_rate,
            settle=plan.settle, window=plan.window, drain=plan.drain,
        )  # fmt: skip
        raw = await generate(spec)
        await wait_idle(self.port)
        step = {"server": self.name, "mode": mode, "sessions": sessions} | raw
        return step | _stats.step_figures(raw, self.idle_rss_mb)

    async def warm_up(self) -> None:
        """The first sessions import and build what later ones reuse; then the idle RSS,
        before any larger run leaves memory the allocator keeps (RSS per session counts
        from it, so it must come before the steps)."""
        for mode in QUERY:
            await self.step(Plan("warm-up", (), 1.0, 0.2, 0.5, 50.0), mode, 10)
        self.idle_rss_mb = round(memory_mb(self.pid)["VmRSS"], 1)

    async def probe(self) -> dict[str, Any]:
        """CPU per connection set-up and close, with no audio flowing."""
        spec = self.spec("binary", mode="probe", sessions=PROBE_SESSIONS, connect_rate=PROBE_RATE, settle=0.5)
        probe = await generate(spec)
        await wait_idle(self.port)
        return probe
