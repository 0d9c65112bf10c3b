"""The session watchdog's arithmetic, on a clock the test sets: which limit expires, and
that time the reader is busy never counts as idle."""

from __future__ import annotations

import anyio
import pytest

from app.edge.timeouts import NOT_WAITING, Watchdog
from tests.support import Clock

pytestmark = pytest.mark.anyio


async def test_idle_once_the_reader_has_waited_idle_timeout() -> None:
    clock = Clock()
    watchdog = Watchdog(idle_timeout=30.0, max_duration=0.0, clock=clock)
    watchdog.waiting_since = clock.now
    clock.now += 30.0
    with anyio.fail_after(1):
        assert await watchdog.expired() == "idle"


async def test_max_duration_counts_from_admission_whatever_the_reader_does() -> None:
    clock = Clock()
    watchdog = Watchdog(idle_timeout=30.0, max_duration=60.0, clock=clock)
    clock.now += 60.0
    watchdog.waiting_since = clock.now  # it just received a frame
    with anyio.fail_after(1):
        assert await watchdog.expired() == "max_duration"


async def test_a_busy_reader_is_never_idle() -> None:
    clock = Clock()
    watchdog = Watchdog(idle_timeout=0.01, max_duration=0.0, clock=clock)
    watchdog.waiting_since = NOT_WAITING
    clock.now += 3600.0
    # It looks again every idle period (real time), and goes on looking.
    with anyio.move_on_after(0.1) as scope:
        await watchdog.expired()
    assert scope.cancelled_caught
    watchdog.waiting_since = clock.now - 0.01  # waiting for the client again
    with anyio.fail_after(1):
        assert await watchdog.expired() == "idle"


def test_enabled_only_with_a_timeout() -> None:
    assert not Watchdog(0.0, 0.0).enabled
    assert Watchdog(1.0, 0.0).enabled
    assert Watchdog(0.0, 1.0).enabled
