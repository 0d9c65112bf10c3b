"""MAX_SESSIONS bookkeeping: slots are reserved up to the limit and each is given back once."""

from __future__ import annotations

from app.edge.capacity import Capacity, admission
from app.edge.gate import Admitted


def test_slots_up_to_the_limit_then_none() -> None:
    capacity = Capacity(2)
    first, second = capacity.reserve(), capacity.reserve()
    assert first is not None
    assert second is not None
    assert capacity.full
    assert capacity.reserve() is None


def test_a_slot_is_given_back_once_however_often_it_is_released() -> None:
    capacity = Capacity(2)
    slot = capacity.reserve()
    other = capacity.reserve()
    assert slot is not None
    assert other is not None
    admitted = Admitted(slot=slot)
    admitted.release()
    admitted.release()  # the session's close, then its finally
    slot.release()
    assert capacity.used == 1
    assert not capacity.full
    assert capacity.reserve() is not None
    assert capacity.reserve() is None


def test_zero_is_no_limit() -> None:
    capacity = Capacity(0)
    assert all(capacity.reserve() is not None for _ in range(10_000))
    assert not capacity.full


def test_a_verdict_without_a_slot_releases_nothing() -> None:
    Admitted().release()


def test_no_check_at_all_without_a_limit() -> None:
    assert admission(Capacity(0)) is None
    assert admission(Capacity(1)) is not None
