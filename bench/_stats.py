"""The arithmetic of the load benchmark, kept free of sockets and processes so that
tests/unit/test_bench_stats.py can check it: percentiles, loss accounting per
connection, a step's derived figures, the summary, and the printed table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A step is within capacity when its p99 round trip is at most this and no frame was lost.
P99_LIMIT_MS = 50.0
# A frame back later than this is "late": a voice client's jitter buffer rarely holds more,
# so for playback it is as good as lost (it is still counted as received, not lost).
LATE_MS = 200.0


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, interpolated linearly between the two
    nearest ranks (numpy's default); NaN for no values."""
    if not ordered:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Iterable[float], digits: int = 2) -> dict[str, float | None]:
    """p50, p95, p99 and max of `values`, rounded; None for each when there are none."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(ordered, 50), digits),
        "p95": round(percentile(ordered, 95), digits),
        "p99": round(percentile(ordered, 99), digits),
        "max": round(ordered[-1], digits),
    }


@dataclass(slots=True)
class SequenceTracker:
    """The replies of one connection, in the order they came back, matched to the order in
    which the frames were sent (0, 1, 2, ...). A reply past the next expected number means
    the frames between never came back (a gap); one before it came back twice or out of
    order. The server relays over one TCP stream, so neither should ever happen."""

    expected: int = 0
    received: int = 0
    gaps: int = 0
    duplicates: int = 0

    def seen(self, seq: int) -> None:
        self.received += 1
        if seq == self.expected:
            self.expected += 1
        elif seq > self.expected:
            self.gaps += seq - self.expected
            self.expected = seq + 1
        else:
            self.duplicates += 1

    def outstanding(self, sent: int) -> int:
        """Frames sent that have not come back (nor been skipped by a later reply)."""
        return sent - self.expected


def step_figures(raw: Mapping[str, Any], idle_rss_mb: float) -> dict[str, Any]:
    """What the report derives from one generator run (see bench/_loadgen.py's result):
    frames/s, server CPU per relayed frame, RSS per open session beyond `idle_rss_mb`."""
    replies = raw["replies_in_window"]
    window = raw["window_s"]
    cpu = raw["server_cpu_s"]
    open_sessions = raw["sessions_open"]
    rss = raw["server_rss_mb"]
    return {
        "frames_per_s": round(replies / window, 1) if window > 0 else None,
        "cpu_us_per_frame": round(cpu * 1e6 / replies, 1) if replies else None,
        "server_cpu_pct": round(100 * cpu / window, 1) if window > 0 else None,
        "lost": raw["sent"] - raw["received"],
        "rss_per_session_kb": (
            round((rss - idle_rss_mb) * 1024 / open_sessions, 1) if open_sessions else None
        ),
    }


def within_capacity(step: Mapping[str, Any]) -> bool:
    p99 = step["rtt_ms"]["p99"]
    return (
        p99 is not None
        and p99 <= P99_LIMIT_MS
        and step["lost"] == 0
        and step["sessions_open"] == step["sessions"]
    )


def _steps(steps: Iterable[Mapping[str, Any]], server: str, mode: str) -> list[Mapping[str, Any]]:
    chosen = [s for s in steps if s["server"] == server and s["mode"] == mode and not s.get("skipped")]
    return sorted(chosen, key=lambda s: s["sessions"])


def capacity(steps: Iterable[Mapping[str, Any]], mode: str, server: str = "ours") -> int:
    """The largest N below the first step (in N order) that is not within capacity: a step
    that passes above one that failed is noise, not capacity. 0 when the first fails."""
    found = 0
    for step in _steps(steps, server, mode):
        if not within_capacity(step):
            break
        found = step["sessions"]
    return found


def cpu_ratios(steps: Sequence[Mapping[str, Any]], mode: str) -> dict[int, float]:
    """ours/baseline CPU per frame at each N where both ran and ours is within capacity."""
    baseline = {s["sessions"]: s for s in _steps(steps, "baseline", mode)}
    limit = capacity(steps, mode)
    ratios: dict[int, float] = {}
    for step in _steps(steps, "ours", mode):
        other = baseline.get(step["sessions"])
        if step["sessions"] > limit or other is None:
            continue
        if step["cpu_us_per_frame"] and other["cpu_us_per_frame"]:
            ratios[step["sessions"]] = round(step["cpu_us_per_frame"] / other["cpu_us_per_frame"], 2)
    return ratios


def summary(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures the issue's targets are stated in (see bench/load.py's docstring)."""
    ratios = {mode: cpu_ratios(steps, mode) for mode in ("binary", "json")}
    binary = _steps(steps, "ours", "binary")
    at_200 = next((s for s in binary if s["sessions"] == 200), None)
    limit = capacity(steps, "binary")
    largest = next((s for s in reversed(binary) if s["sessions"] == limit), None)
    return {
        "cpu_ratio": {mode: max(r.values()) if r else None for mode, r in ratios.items()},
        "cpu_ratio_by_sessions": {mode: {str(n): r for n, r in v.items()} for mode, v in ratios.items()},
        "max_sessions": limit,
        "max_sessions_json": capacity(steps, "json"),
        "setup_p99_ms": at_200["setup_ms"]["p99"] if at_200 else None,
        "rss_per_session_kb": largest["rss_per_session_kb"] if largest else None,
    }


def overload_verdict(overload: Mapping[str, Any]) -> dict[str, bool]:
    """Whether the sessions admitted at MAX_SESSIONS kept a latency within the limits, and
    every one beyond it was refused with 503, by the server's count as well as the clients'."""
    extra = overload["offered"] - overload["max_sessions"]
    p99 = overload["rtt_ms_admitted"]["p99"]
    return {
        "admitted_kept_latency": p99 is not None and p99 <= P99_LIMIT_MS and overload["lost"] == 0,
        "refused_cleanly": (
            overload["admitted"] == overload["max_sessions"]
            and overload["refused_by_status"] == {"503": extra}
            and overload["refused_by_server"].get("capacity") == extra
            and not overload["connect_errors"]
        ),
    }


COLUMNS = (
    ("N", lambda s: s["sessions"]),
    ("mode", lambda s: s["mode"]),
    ("server", lambda s: s["server"]),
    ("frames/s", lambda s: s["frames_per_s"]),
    ("CPU µs/frame", lambda s: s["cpu_us_per_frame"]),
    ("ratio", lambda s: s.get("ratio")),
    ("p50 ms", lambda s: s["rtt_ms"]["p50"]),
    ("p95 ms", lambda s: s["rtt_ms"]["p95"]),
    ("p99 ms", lambda s: s["rtt_ms"]["p99"]),
    ("lost", lambda s: s["lost"]),
    ("late", lambda s: s["late"]),
    ("RSS MB", lambda s: s["server_rss_mb"]),
    ("KB/session", lambda s: s["rss_per_session_kb"]),
    ("set-up p50/p99 ms", lambda s: f"{s['setup_ms']['p50']} / {s['setup_ms']['p99']}"),
    ("gen CPU %", lambda s: s["generator_cpu_pct"]),
    ("send late p99 ms", lambda s: s["send_lateness_ms"]["p99"]),
)


def table(steps: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table, one row a step; a skipped step says why."""
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for step in steps:
        if step.get("skipped"):
            cells = [str(step["sessions"]), step["mode"], step["server"], f"skipped: {step['skipped']}"]
            cells += [""] * (len(COLUMNS) - len(cells))
        else:
            cells = ["-" if (v := get(step)) is None else str(v) for _, get in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
