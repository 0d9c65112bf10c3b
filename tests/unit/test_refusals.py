from __future__ import annotations

import pytest

from app.edge.refusals import Refusals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_refusal_is_counted_and_a_flood_is_logged_once_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = Refusals(log_interval=1.0, clock=clock)
    caplog.set_level("WARNING", logger="app.edge.refusals")
    for _ in range(50):
        refusals.record("capacity", "MAX_SESSIONS=2 reached")
    refusals.record("origin", "origin https://evil.example not allowed")
    clock.now += 1.0
    refusals.record("capacity", "MAX_SESSIONS=2 reached")

    assert refusals.counts == {"capacity": 51, "origin": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused: reason=capacity MAX_SESSIONS=2 reached",
        "refused: reason=origin origin https://evil.example not allowed",
        "refused: reason=capacity MAX_SESSIONS=2 reached (49 more since the last line)",
    ]
