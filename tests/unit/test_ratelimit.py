"""The token bucket behind the input rate limits, on a clock the test moves."""

from __future__ import annotations

import pytest
from starlette import status

from app.config import Settings
from app.edge.ratelimit import CALM_SECONDS, InputLimit, InputLimits, RateLimited
from app.wire.outbound import Error
from tests.support import Clock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_is_free_then_each_frame_waits_for_the_refill(clock: Clock) -> None:
    limit = InputLimit("x", rate=2.0, burst=4.0, grace=10.0, clock=clock)
    assert [limit.take(1) for _ in range(4)] == [0.0] * 4
    assert limit.take(1) == 0.5  # one token short, at two a second
    clock.now += 0.5  # the wait is served
    assert limit.take(1) == 0.5


def test_the_bucket_refills_up_to_the_burst_and_no_further(clock: Clock) -> None:
    limit = InputLimit("x", rate=2.0, burst=4.0, grace=10.0, clock=clock)
    limit.take(4)
    clock.now += 1.0
    assert limit.take(2) == 0.0  # refilled by 2
    clock.now += 3600.0
    assert limit.take(4) == 0.0
    assert limit.take(1) == 0.5  # held no more than the burst


def test_a_frame_larger_than_the_burst_waits_only_for_its_excess(clock: Clock) -> None:
    limit = InputLimit("x", rate=2.0, burst=4.0, grace=10.0, clock=clock)
    assert limit.take(10) == 3.0  # 6 tokens over, not forever


def test_a_rate_of_zero_is_no_limit(clock: Clock) -> None:
    limit = InputLimit("x", rate=0.0, burst=0.0, grace=0.0, clock=clock)
    assert limit.take(1e12) == 0.0
    assert limit.take(1e12) == 0.0


async def test_one_warning_an_episode_and_the_end_past_the_grace(clock: Clock) -> None:
    warnings: list[Error] = []

    async def warn(error: Error) -> None:
        warnings.append(error)

    # 1000 tokens a second: the real waits inside pace() are a millisecond or two.
    limit = InputLimit("too fast", rate=1000.0, burst=1.0, grace=1.0, clock=clock)
    limit.take(1)
    await limit.pace(limit.take(1), warn)
    await limit.pace(limit.take(1), warn)  # the same episode: no second warning
    assert warnings == [
        {
            "type": "error",
            "code": "rate_limited",
            "message": "too fast; reading is slowed, and the session closes if it goes on for 1 s",
            "fatal": False,
        }
    ]
    clock.now += 0.5  # a pause shorter than CALM_SECONDS: the episode goes on
    assert limit.take(1) == 0.0
    await limit.pace(limit.take(2), warn)
    assert len(warnings) == 1
    clock.now += 0.4
    with pytest.raises(RateLimited) as ended:  # 0.9 s into the episode, and 1.2 s more to wait
        await limit.pace(limit.take(1200), warn)
    assert (ended.value.code, ended.value.fatal, ended.value.close_code) == (
        "rate_limited",
        True,
        status.WS_1008_POLICY_VIOLATION,
    )
    assert ended.value.message == "too fast for more than 1 s"
    clock.now += CALM_SECONDS + 2.0  # the debt is paid and a calm second has passed
    assert limit.take(1) == 0.0
    await limit.pace(limit.take(1), warn)  # a new episode, a new warning
    assert len(warnings) == 2


async def test_a_grace_of_zero_ends_the_session_at_the_first_wait(clock: Clock) -> None:
    async def warn(error: Error) -> None:
        raise AssertionError("no warning when the session ends at once")

    limit = InputLimit("too fast", rate=10.0, burst=1.0, grace=0.0, clock=clock)
    limit.take(1)
    with pytest.raises(RateLimited):
        await limit.pace(limit.take(1), warn)


def test_audio_is_measured_in_seconds_at_the_session_rate() -> None:
    limits = InputLimits.for_session(
        Settings(audio_rate_limit=2.0, audio_burst_seconds=2.0, text_rate_limit=10.0, text_burst=40), 8000
    )
    second = 2 * 8000  # bytes of PCM16 at 8 kHz
    assert limits.audio.take(2 * second) == 0.0  # the 2 s burst
    assert limits.audio.take(second) == pytest.approx(0.5, abs=0.01)  # 1 s more, at 2x real time
    assert [limits.text.take(1) for _ in range(40)] == [0.0] * 40
    assert limits.text.take(1) == pytest.approx(0.1, abs=0.01)
    assert limits.audio.what == "audio faster than 2x real time"
    assert limits.text.what == "more than 10 messages a second"


def test_limits_of_zero_never_delay_anything() -> None:
    limits = InputLimits.for_session(Settings(audio_rate_limit=0.0, text_rate_limit=0.0), 48000)
    assert max(limits.audio.take(10**9) for _ in range(100)) == 0.0
    assert max(limits.text.take(1) for _ in range(10_000)) == 0.0
