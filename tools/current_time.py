"""current_time: the local time in a named IANA time zone (or a city in one)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from strands import tool


@cache
def _zones_by_city() -> dict[str, str]:
    # "Asia/Tokyo" -> "tokyo", "America/New_York" -> "new york"
    return {zone.rsplit("/", 1)[-1].replace("_", " ").lower(): zone for zone in available_timezones()}


def resolve_zone(name: str) -> ZoneInfo:
    cleaned = name.strip()
    if cleaned.upper() in ("UTC", "GMT", "Z"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(cleaned)
    except (ZoneInfoNotFoundError, ValueError):
        zone = _zones_by_city().get(cleaned.replace("_", " ").lower())
        if zone is None:
            raise ValueError(
                f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'Asia/Tokyo'"
            ) from None
        return ZoneInfo(zone)


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
