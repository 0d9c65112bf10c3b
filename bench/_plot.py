"""The picture of a bench/load.py run: round trips and CPU per frame against sessions,
ours beside the baseline, binary frames and JSON audio side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt

from bench._stats import P99_LIMIT_MS

STYLE = {
    "ours": {"color": "tab:blue", "linestyle": "-"},
    "baseline": {"color": "tab:gray", "linestyle": "--"},
}


def _series(steps: list[dict[str, Any]], server: str, mode: str, get: Any) -> tuple[list[int], list[float]]:
    ran = sorted(
        (s for s in steps if s["server"] == server and s["mode"] == mode and not s.get("skipped")),
        key=lambda s: s["sessions"],
    )
    points = [(s["sessions"], get(s)) for s in ran if get(s) is not None]
    return [n for n, _ in points], [v for _, v in points]


def plot(result: dict[str, Any], path: Path) -> None:
    steps = result["steps"]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for column, mode in enumerate(("binary", "json")):
        latency, cpu = axes[0][column], axes[1][column]
        for server, style in STYLE.items():
            for pct, marker in (("p50", "o"), ("p99", "^")):
                xs, ys = _series(steps, server, mode, lambda s, pct=pct: s["rtt_ms"][pct])
                latency.plot(xs, ys, marker=marker, label=f"{server} {pct}", **style)
            xs, ys = _series(steps, server, mode, lambda s: s["cpu_us_per_frame"])
            cpu.plot(xs, ys, marker="o", label=server, **style)
        latency.axhline(P99_LIMIT_MS, color="tab:red", linewidth=0.8, label=f"{P99_LIMIT_MS:g} ms")
        latency.set_yscale("log")
        latency.set_title(f"round trip, {mode} audio")
        latency.set_ylabel("ms (log scale)")
        cpu.set_title(f"server CPU per relayed frame, {mode} audio")
        cpu.set_ylabel("µs")
        cpu.set_ylim(bottom=0)
        cpu.set_xlabel("concurrent sessions (20 ms frames both ways)")
        for axis in (latency, cpu):
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
    machine = result["machine"]
    load = machine["load_average_before"][0]
    figure.suptitle(
        f"{result['plan']['name']} run, {machine['date']}, {machine['cpu']}, server on one core "
        f"(load average {load:.2f} before)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
