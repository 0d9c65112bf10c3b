from __future__ import annotations

import re
import zoneinfo
from pathlib import Path

import pytest
import tzdata
from strands.types.tools import ToolUse

from tests.support import load_tool_module

current_time = load_tool_module("current_time")
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


# ZoneInfo reads the file its key names; for a directory or an over-long name, the error
# it raises carries that file's full path on the server.
SERVER_PATHS = [*zoneinfo.TZPATH, str(Path(tzdata.__file__).parent)]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Europe", id="a-directory"),
        pytest.param("America/Argentina", id="a-nested-directory"),
        pytest.param("x" * 300, id="a-name-too-long-for-the-filesystem"),
        pytest.param("../../etc/passwd", id="relative-path-out"),
        pytest.param("/etc/passwd", id="absolute-path"),
        pytest.param("zone.tab", id="a-data-file-that-is-not-a-zone"),
        pytest.param("Europe\x00Paris", id="null-byte"),
    ],
)
async def test_bad_names_reach_the_model_without_server_paths(name: str) -> None:
    tool_use: ToolUse = {"toolUseId": "t-1", "name": "current_time", "input": {"timezone": name}}
    events = [event async for event in current_time.current_time.stream(tool_use, {})]
    result = events[-1]["tool_result"]
    text = result["content"][0]["text"]
    assert result["status"] == "error"
    assert text.startswith("Error: unknown time zone "), text
    assert text.endswith("use an IANA name such as 'Europe/Paris' or 'Asia/Tokyo'")
    assert not any(path in text for path in SERVER_PATHS), text


def test_zone_names_are_matched_without_case() -> None:
    assert current_time.resolve_zone("europe/paris").key == "Europe/Paris"
