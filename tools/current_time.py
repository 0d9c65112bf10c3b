"""current_time: the local time in a named IANA time zone (or a city in one)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from strands import tool


@cache
def _zones() -> dict[str, str]:
    # "europe/paris" -> "Europe/Paris": only these keys ever reach ZoneInfo, which reads a
    # file named by its key and puts that file's full path into some of its errors.
    return {zone.lower(): zone for zone in available_timezones()}


@cache
def _zones_by_city() -> dict[str, str]:
    # "Asia/Tokyo" -> "tokyo", "America/New_York" -> "new york"
    return {zone.rsplit("/", 1)[-1].replace("_", " ").lower(): zone for zone in available_timezones()}


def resolve_zone(name: str) -> ZoneInfo:
    cleaned = name.strip()
    if cleaned.upper() in ("UTC", "GMT", "Z"):
        return ZoneInfo("UTC")
    zone = _zones().get(cleaned.lower()) or _zones_by_city().get(cleaned.replace("_", " ").lower())
    if zone is None:
        shown = cleaned if len(cleaned) <= 40 else cleaned[:40] + "..."
        raise ValueError(
            f"unknown time zone {shown!r}; use an IANA name such as 'Europe/Paris' or 'Asia/Tokyo'"
        )
    try:
        return ZoneInfo(zone)
    except (OSError, ValueError, ZoneInfoNotFoundError):  # a damaged zone file: keep its path out
        raise ValueError(f"the data for time zone {zone!r} cannot be read") from None


@tool
async def current_time(timezone: str = "UTC") -> str:
    """Get the current date and time in a time zone.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris" or "Asia/Tokyo", or a
            city that names one ("Tokyo"). Defaults to UTC.
    """
    zone = resolve_zone(timezone)
    now = datetime.now(zone)
    return f"{now:%A, %d %B %Y, %H:%M} {now.tzname()} ({zone.key})"
