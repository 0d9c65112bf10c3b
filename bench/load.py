"""How many full-duplex audio sessions one server process carries, and what it spends per
frame, against a bare WebSocket echo measured in the same run (issue 11).

    make bench          # full: 50, 100, 150, 200, 250, 300, 400, 600 sessions, 10 s each
    make bench-quick    # 50, 150, 200, 300 sessions, 4 s each (about three minutes)
    make soak           # sessions coming and going for SOAK_SECONDS (default 300)
    .venv/bin/python -m bench.load --steps 20 50 --window 3     # by hand

Servers, each pinned to core 0 (`taskset`): ours, as `python -m app` runs it (production
settings except MODEL_PROVIDER=echo, INPUT_SAMPLE_RATE=OUTPUT_SAMPLE_RATE=16000, so audio
comes back unchanged and nothing is resampled, and MAX_SESSIONS=0 so the steps above the
default limit of 200 are not refused), and the baseline (bench/baseline.py). The load
generator (bench/_loadgen.py) is a process of its own on core 1, one per run.

Per step N, for each server and for binary frames and JSON (base64) audio: N sessions
open at `--connect-rate` a second, each streaming from its `session_start`; after
`--settle` seconds the server's CPU time (/proc/<pid>/stat), RSS and the round trips of
every frame sent in `--window` seconds are measured. A frame not back `--drain` seconds
after the window is lost; one back after 200 ms is late. Ours at N runs right before
the baseline at N, so a change in the machine's load hits both.

Before the steps, each server is warmed up (10 sessions, binary and JSON), and its idle
RSS read, from which RSS per session is counted. After them it is probed: 200 sessions
opened at 200 a second without audio give the CPU per connection set-up (to its model
connected, for ours) and per close on their own.

After the steps, the overload step restarts ours with MAX_SESSIONS at the capacity found
and offers half as many sessions again: the admitted keep streaming, the rest must be
refused with 503 (counted by the generator, and by /health's `refused`).

Results: bench/results/latest.json (every step, and the `summary`: see bench/_stats.py),
bench/results/latest.png, and a table printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench import _stats
from bench._runs import GENERATOR_CPU, OURS_ENV, QUERY, SERVER_CPU, SERVERS, Plan, Target
from bench._server import ROOT, app_server

RESULTS = ROOT / "bench" / "results"
# A server this far behind carries no more sessions at larger N: those steps are skipped.
SATURATED_LOST, SATURATED_P50_MS = 0.1, 1000.0
# Signs that the generator, not the server, limited a step.
GENERATOR_BUSY_PCT, GENERATOR_LATE_MS = 80.0, 5.0
FULL = Plan(
    "full", (50, 100, 150, 200, 250, 300, 400, 600), window=10.0, settle=1.0, drain=2.0, connect_rate=100.0
)
QUICK = Plan("quick", (50, 150, 200, 300), window=4.0, settle=0.5, drain=1.0, connect_rate=100.0)


def saturated(step: dict[str, Any]) -> bool:
    p50 = step["rtt_ms"]["p50"]
    return step["lost"] > SATURATED_LOST * max(1, step["sent"]) or p50 is None or p50 > SATURATED_P50_MS


async def run_steps(plan: Plan, targets: list[Target]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    saturated_at: dict[tuple[str, str], int] = {}
    for sessions in plan.steps:
        for mode in QUERY:
            for target in targets:
                key = (target.name, mode)
                if key in saturated_at:
                    skipped = {"skipped": f"saturated at {saturated_at[key]}"}
                    steps.append({"server": target.name, "mode": mode, "sessions": sessions} | skipped)
                    continue
                step = await target.step(plan, mode, sessions)
                print(progress(step), flush=True)
                steps.append(step)
                if saturated(step):
                    saturated_at[key] = sessions
    for step in steps:  # ratio ours/baseline at the same N and mode, for the table
        if step["server"] != "ours" or not step.get("cpu_us_per_frame"):
            continue
        other = next((s for s in steps if s["server"] == "baseline" and same(s, step)), None)
        if other and other.get("cpu_us_per_frame"):
            step["ratio"] = round(step["cpu_us_per_frame"] / other["cpu_us_per_frame"], 2)
    return steps


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["mode"] == b["mode"] and a["sessions"] == b["sessions"] and not a.get("skipped")


def progress(step: dict[str, Any]) -> str:
    rtt = step["rtt_ms"]
    return (
        f"  {step['server']:8} {step['mode']:6} N={step['sessions']:<4} {step['cpu_us_per_frame']} µs/frame, "
        f"p50/p99 {rtt['p50']}/{rtt['p99']} ms, lost {step['lost']}, gen CPU {step['generator_cpu_pct']}%"
    )


async def overload(plan: Plan, limit: int, at_limit: dict[str, Any] | None) -> dict[str, Any]:
    """Ours with MAX_SESSIONS=limit, offered limit * 1.5 sessions (binary)."""
    offered = limit + max(1, limit // 2)
    log: list[str] = []
    env = OURS_ENV | {"MAX_SESSIONS": str(limit)}
    async with app_server(env, log, cpus=SERVER_CPU) as (process, port):
        target = Target("ours", process.pid, port)
        await target.warm_up()
        step = await target.step(plan, "binary", offered)
        async with httpx.AsyncClient(timeout=5) as client:
            refused_by_server = (await client.get(f"http://127.0.0.1:{port}/health")).json()["refused"]
    result = {
        "max_sessions": limit,
        "offered": offered,
        "admitted": step["sessions_open"],
        "refused_by_status": step["refused"],
        "refused_by_server": refused_by_server,
        "connect_errors": step["connect_errors"],
        "rtt_ms_admitted": step["rtt_ms"],
        "rtt_ms_at_capacity_step": at_limit["rtt_ms"] if at_limit else None,
        "lost": step["lost"],
        "setup_ms": step["setup_ms"],
    }
    return result | _stats.overload_verdict(result) | {"step": step}


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def generator_health(steps: list[dict[str, Any]]) -> dict[str, Any]:
    ran = [s for s in steps if not s.get("skipped")]
    busiest = max((s["generator_cpu_pct"] for s in ran), default=0.0)
    lateness = [s["send_lateness_ms"]["p99"] or 0.0 for s in ran]
    latest = max(lateness, default=0.0)
    return {
        "max_cpu_pct": busiest,
        "max_send_lateness_p99_ms": latest,
        "bottleneck": busiest > GENERATOR_BUSY_PCT or latest > GENERATOR_LATE_MS,
    }


async def bench(plan: Plan) -> dict[str, Any]:
    load_before = os.getloadavg()
    logs: dict[str, list[str]] = {"ours": [], "baseline": []}
    ours_env = OURS_ENV | {"MAX_SESSIONS": "0"}
    async with contextlib.AsyncExitStack() as stack:
        targets: list[Target] = []
        servers: dict[str, dict[str, Any]] = {}
        for name, (module, _) in SERVERS.items():
            process, port = await stack.enter_async_context(
                app_server(ours_env, logs[name], module=module, cpus=SERVER_CPU)
            )
            targets.append(Target(name, process.pid, port))
        for target in targets:
            await target.warm_up()
        steps = await run_steps(plan, targets)
        for target in targets:
            probe = await target.probe()
            servers[target.name] = {"idle_rss_mb": target.idle_rss_mb, "probe": probe}
            print(f"{target.name}: idle RSS {target.idle_rss_mb} MB, set-up probe {probe}")
    summary = _stats.summary(steps)
    summary["setup_cpu_ms"] = servers["ours"]["probe"]["setup_cpu_ms"]
    limit = summary["max_sessions"]
    wanted = {"mode": "binary", "sessions": limit}
    at_limit = next((s for s in steps if s["server"] == "ours" and same(s, wanted)), None)
    over = await overload(plan, limit, at_limit) if limit else None
    return {
        "plan": asdict(plan),
        "machine": machine() | {"load_average_before": load_before, "load_average_after": os.getloadavg()},
        "settings": {"ours": ours_env, "baseline": "bench/baseline.py, same uvicorn options"},
        "servers": servers,
        "steps": steps,
        "overload": over,
        "generator": generator_health(steps),
        "summary": summary,
    }


def pin_self() -> None:
    """This process (and its log threads) on the generator's core, off the server's."""
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the benchmark needs 2 cores: the server on one, the load generator on the other")
    os.sched_setaffinity(0, {int(GENERATOR_CPU)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick plan (make bench-quick)")
    parser.add_argument("--soak", action="store_true", help="the soak instead (make soak)")
    parser.add_argument("--soak-seconds", type=float, default=300.0)
    parser.add_argument("--steps", type=int, nargs="*", help="session counts, instead of the plan's")
    parser.add_argument("--window", type=float, help="seconds measured per step")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.png go")
    args = parser.parse_args()
    pin_self()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.soak:
        from bench._soak import report, soak

        result = asyncio.run(soak(args.soak_seconds))
        (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
        print(report(result))
        return
    plan = QUICK if args.quick else FULL
    if args.steps:
        plan = Plan("custom", tuple(args.steps), plan.window, plan.settle, plan.drain, plan.connect_rate)
    if args.window:
        plan = Plan(plan.name, plan.steps, args.window, plan.settle, plan.drain, plan.connect_rate)
    if (load := os.getloadavg()[0]) > 1.0:
        print(f"warning: load average {load:.2f}: others are using the machine", file=sys.stderr)
    result = asyncio.run(bench(plan))
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    from bench._plot import plot

    plot(result, args.out / "latest.png")
    print(_stats.table(result["steps"]))
    print(json.dumps({"summary": result["summary"], "generator": result["generator"]}, indent=2))
    if result["overload"]:
        print(json.dumps({k: v for k, v in result["overload"].items() if k != "step"}, indent=2))


if __name__ == "__main__":
    main()
