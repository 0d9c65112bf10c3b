from __future__ import annotations

import pytest

from app.restarts import RestartBudget, RestartLimitError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_restarts_within_the_window_are_limited() -> None:
    clock = Clock()
    budget = RestartBudget(limit=2, window=60, clock=clock)
    budget.spend()
    clock.now += 10
    budget.spend()
    clock.now += 10
    with pytest.raises(RestartLimitError, match="failed 3 times within 60 s") as info:
        budget.spend()
    assert (info.value.code, info.value.fatal, info.value.close_code) == ("model_restart_limit", True, 1013)


def test_restarts_far_apart_are_not_limited() -> None:
    # Nova's ordinary restarts (silence timeouts, the connection cap) come minutes apart.
    clock = Clock()
    budget = RestartBudget(limit=2, window=60, clock=clock)
    for _ in range(10):
        budget.spend()
        clock.now += 30.1
    budget.spend()


def test_a_limit_of_zero_refuses_every_restart() -> None:
    with pytest.raises(RestartLimitError):
        RestartBudget(limit=0, window=60, clock=Clock()).spend()
