"""What a relay through strands' `BidiAgent` cannot go below: the bare echo of
bench/load.py (bench/baseline.py) against the same echo with each frame handed on twice,
through an `asyncio.Queue` to another task each time (`BASELINE_HOPS=2`), and our server,
in the same run, under the same settings and pinning as bench/load.py.

Why two hand-offs: an audio frame our server relays wakes three tasks, where the bare
echo wakes one. The socket reader passes the frame to `agent.send` itself (app/feed.py),
which hands it to the model; the model's events are read by strands' own task
(`_AgentLoop._run_model`, over the model's `receive()`), which puts each on the agent
loop's queue; and our output relay reads that queue through `agent.receive()`. The
second and third wake-ups are strands' design: what any model's events and every
`agent.receive()` reader must go through. The hop baseline does those two wake-ups and
nothing else, so its cost over the bare echo is the part of ours no code of ours can
remove without bypassing the agent.

    make bench-floor                                   # 50, 150 and 250 sessions, binary and JSON
    .venv/bin/python -m bench.floor --steps 150 --window 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from dataclasses import asdict
from typing import Any

from bench._runs import OURS_ENV, QUERY, SERVER_CPU, Plan, Target
from bench._server import ROOT, app_server
from bench.load import pin_self

PLAN = Plan("floor", (50, 150, 250), window=6.0, settle=1.0, drain=1.5, connect_rate=100.0)
# name: (module, extra environment, the message that ends set-up)
SERVERS: dict[str, tuple[str, dict[str, str], str]] = {
    "ours": ("app", OURS_ENV, "connection_start"),
    "baseline": ("bench.baseline", {}, "session_start"),
    "2 hops": ("bench.baseline", {"BASELINE_HOPS": "2"}, "session_start"),
}


async def measure(plan: Plan) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    logs: dict[str, list[str]] = {name: [] for name in SERVERS}
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for name, (module, env, ready) in SERVERS.items():
            settings = env | {"MAX_SESSIONS": "0"}
            process, port = await stack.enter_async_context(
                app_server(settings, logs[name], module=module, cpus=SERVER_CPU)
            )
            target = Target("ours" if name == "ours" else "baseline", process.pid, port)
            target.ready_type = ready
            targets.append((name, target))
        for _, target in targets:
            await target.warm_up()
        for sessions in plan.steps:
            for mode in QUERY:
                for name, target in targets:
                    step = await target.step(plan, mode, sessions)
                    rows.append({"server": name, "mode": mode, "sessions": sessions} | _figures(step))
                    print(_line(rows[-1]), flush=True)
    return rows


def _figures(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "cpu_us_per_frame": step["cpu_us_per_frame"],
        "rtt_p99_ms": step["rtt_ms"]["p99"],
        "lost": step["lost"],
    }


def _line(row: dict[str, Any]) -> str:
    return (
        f"  {row['server']:8} {row['mode']:6} N={row['sessions']:<4} {row['cpu_us_per_frame']} µs/frame, "
        f"p99 {row['rtt_p99_ms']} ms, lost {row['lost']}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| sessions | mode | baseline µs | 2 hops µs (x baseline) | ours µs (x baseline, x 2 hops) "
        "| p99 baseline / 2 hops / ours ms |",
        "|---|---|---|---|---|---|",
    ]
    keyed = {(r["server"], r["mode"], r["sessions"]): r for r in rows}
    for sessions in sorted({r["sessions"] for r in rows}):
        for mode in QUERY:
            base, hops, ours = (keyed[(name, mode, sessions)] for name in ("baseline", "2 hops", "ours"))
            b, h, o = (r["cpu_us_per_frame"] for r in (base, hops, ours))
            lines.append(
                f"| {sessions} | {mode} | {b} | {h} ({h / b:.2f}x) | {o} ({o / b:.2f}x, {o / h:.2f}x) "
                f"| {base['rtt_p99_ms']} / {hops['rtt_p99_ms']} / {ours['rtt_p99_ms']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="*", help="session counts, instead of 50 150 250")
    parser.add_argument("--window", type=float, help="seconds measured per step")
    args = parser.parse_args()
    pin_self()
    plan = PLAN
    if args.steps:
        plan = Plan(plan.name, tuple(args.steps), plan.window, plan.settle, plan.drain, plan.connect_rate)
    if args.window:
        plan = Plan(plan.name, plan.steps, args.window, plan.settle, plan.drain, plan.connect_rate)
    rows = asyncio.run(measure(plan))
    out = ROOT / "bench" / "results" / "floor.json"
    out.write_text(json.dumps({"plan": asdict(plan), "rows": rows}, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
