from __future__ import annotations

import re

import pytest

from tests.unit.test_calculator import _load

current_time = _load("current_time")
pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("name", "key"),
    [("Asia/Tokyo", "Asia/Tokyo"), ("tokyo", "Asia/Tokyo"), ("New York", "America/New_York"), ("utc", "UTC")],
)
def test_resolves_zone_names_and_cities(name: str, key: str) -> None:
    assert current_time.resolve_zone(name).key == key


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'; use an IANA name"):
        current_time.resolve_zone("Mars/Olympus")


async def test_tool_answers_with_time_and_zone() -> None:
    text = await current_time.current_time("Europe/Paris")
    assert re.fullmatch(r"\w+day, \d\d \w+ \d{4}, \d\d:\d\d CES?T \(Europe/Paris\)", text), text
