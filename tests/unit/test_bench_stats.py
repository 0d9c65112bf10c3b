"""The arithmetic of the load benchmark (bench/_stats.py), without running any load:
percentiles, loss accounting, a step's derived figures, the summary and the table."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench._stats import (
    SequenceTracker,
    capacity,
    overload_verdict,
    percentile,
    spread,
    step_figures,
    summary,
    table,
)


def test_percentiles_interpolate_between_ranks_like_numpy() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 50) == 5.5  # halfway between the 5th and 6th
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="101"):
        percentile(values, 101)


def test_spread_sorts_and_reports_none_for_no_values() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"p50": 2.0, "p95": 2.9, "p99": 2.98, "max": 3.0}
    assert spread([]) == {"p50": None, "p95": None, "p99": None, "max": None}


def test_a_tracker_counts_frames_skipped_repeated_and_still_outstanding() -> None:
    tracker = SequenceTracker()
    for seq in (0, 1, 2, 5, 6, 4, 6, 7):  # 3 and 4 skipped by 5; 4 late; 6 twice
        tracker.seen(seq)
    assert tracker.received == 8
    assert tracker.gaps == 2
    assert tracker.duplicates == 2
    assert tracker.outstanding(sent=10) == 2  # 8 and 9 not back yet
    assert tracker.outstanding(sent=8) == 0


Step = dict[str, Any]


def raw(**changes: Any) -> dict[str, Any]:
    """A generator result (bench/_loadgen.py's `step`) with figures easy to check."""
    base = {
        "sessions_open": 100,
        "window_s": 4.0,
        "replies_in_window": 20_000,
        "server_cpu_s": 2.0,
        "server_rss_mb": 110.0,
        "sent": 20_000,
        "received": 19_990,
    }
    return base | changes


def test_step_figures_count_cpu_per_relayed_frame_and_memory_beyond_idle() -> None:
    figures = step_figures(raw(), idle_rss_mb=100.0)
    assert figures["frames_per_s"] == 5000.0
    assert figures["cpu_us_per_frame"] == 100.0  # 2 s of CPU for 20,000 frames
    assert figures["server_cpu_pct"] == 50.0
    assert figures["lost"] == 10
    assert figures["rss_per_session_kb"] == 102.4  # 10 MB over 100 sessions


def test_step_figures_without_replies_or_sessions_are_none_not_a_crash() -> None:
    figures = step_figures(raw(replies_in_window=0, sessions_open=0, received=0), idle_rss_mb=100.0)
    assert figures["cpu_us_per_frame"] is None
    assert figures["rss_per_session_kb"] is None
    assert figures["lost"] == 20_000


def step(
    server: str, mode: str, n: int, cpu: float, p99: float = 5.0, lost: int = 0, **more: Any
) -> dict[str, Any]:
    return {
        "server": server,
        "mode": mode,
        "sessions": n,
        "sessions_open": n,
        "cpu_us_per_frame": cpu,
        "rtt_ms": {"p50": 1.0, "p95": 2.0, "p99": p99, "max": p99},
        "lost": lost,
        "setup_ms": {"p50": 2.0, "p99": 9.0 + n / 100},
        "rss_per_session_kb": 50.0 + n / 10,
    } | more


def test_capacity_stops_at_the_first_step_over_the_limits() -> None:
    steps = [
        step("ours", "binary", 50, 120),
        step("ours", "binary", 200, 80, p99=49.0),
        step("ours", "binary", 300, 70, p99=60.0),  # p99 over 50 ms
        step("ours", "binary", 400, 60),  # passes again: noise, not capacity
    ]
    assert capacity(steps, "binary") == 200
    assert capacity([*steps[:2], step("ours", "binary", 300, 70, lost=1)], "binary") == 200
    refused = step("ours", "binary", 300, 70, sessions_open=250)  # not every session got in
    assert capacity([*steps[:2], refused], "binary") == 200
    assert capacity([step("ours", "binary", 50, 120, p99=80.0)], "binary") == 0
    assert capacity(steps, "json") == 0


def test_summary_takes_the_worst_ratio_within_capacity_at_equal_sessions() -> None:
    steps = [
        step("ours", "binary", 50, 150),
        step("baseline", "binary", 50, 100),  # 1.5
        step("ours", "binary", 200, 90),
        step("baseline", "binary", 200, 50),  # 1.8: the worst within capacity
        step("ours", "binary", 300, 400, p99=900.0, lost=5000),  # beyond capacity: not counted
        step("baseline", "binary", 300, 40),
        step("ours", "json", 50, 160),
        step("baseline", "json", 50, 100),  # 1.6
        step("ours", "json", 200, 120, p99=70.0),
        step("baseline", "json", 200, 60),
        {"server": "ours", "mode": "json", "sessions": 300, "skipped": "saturated at 200"},
    ]
    result = summary(steps)
    assert result["cpu_ratio"] == {"binary": 1.8, "json": 1.6}
    assert result["cpu_ratio_by_sessions"]["binary"] == {"50": 1.5, "200": 1.8}
    assert result["max_sessions"] == 200
    assert result["max_sessions_json"] == 50
    assert result["setup_p99_ms"] == 11.0  # ours, binary, at 200
    assert result["rss_per_session_kb"] == 70.0  # at the largest N within capacity


def test_summary_of_no_steps_within_capacity_has_no_figures() -> None:
    result = summary([step("ours", "binary", 50, 150, p99=80.0), step("baseline", "binary", 50, 100)])
    assert result["max_sessions"] == 0
    assert result["cpu_ratio"] == {"binary": None, "json": None}
    assert result["setup_p99_ms"] is None
    assert result["rss_per_session_kb"] is None


def test_the_table_has_a_row_per_step_and_says_why_one_was_skipped() -> None:
    ran = step(
        "ours", "binary", 50, 150, frames_per_s=2500.0, late=0, server_rss_mb=100.0,
        generator_cpu_pct=12.0, send_lateness_ms={"p99": 0.8}, ratio=1.5,
    )  # fmt: skip
    skipped = {"server": "ours", "mode": "json", "sessions": 300, "skipped": "saturated at 200"}
    lines = table([ran, skipped]).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| N | mode | server |")
    header, row = lines[0].split(" | "), lines[2].split(" | ")
    assert len(row) == len(header)
    assert row[header.index("CPU µs/frame")] == "150"
    assert row[header.index("ratio")] == "1.5"
    assert "skipped: saturated at 200" in lines[3]


def test_an_overload_is_clean_only_if_every_extra_session_got_a_503_counted_on_both_sides() -> None:
    clean = {
        "max_sessions": 200,
        "offered": 300,
        "admitted": 200,
        "refused_by_status": {"503": 100},
        "refused_by_server": {"capacity": 100},
        "connect_errors": {},
        "rtt_ms_admitted": {"p99": 12.0},
        "lost": 0,
    }
    assert overload_verdict(clean) == {"admitted_kept_latency": True, "refused_cleanly": True}
    for change in (
        {"refused_by_status": {"503": 99, "500": 1}},
        {"refused_by_server": {"capacity": 99}},
        {"connect_errors": {"OSError": 1}},
        {"admitted": 199},
    ):
        assert overload_verdict(clean | change)["refused_cleanly"] is False, change
    assert overload_verdict(clean | {"rtt_ms_admitted": {"p99": 51.0}})["admitted_kept_latency"] is False
    assert overload_verdict(clean | {"lost": 1})["admitted_kept_latency"] is False
