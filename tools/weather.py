"""weather: current conditions for a place.

Uses OpenWeatherMap when WEATHER_API_KEY is set, otherwise Open-Meteo (no key). Calls go
through the app's shared httpx client (pooled, with TOOL_HTTP_TIMEOUT); the key is sent
only to OpenWeatherMap and never logged.
"""

from __future__ import annotations

from typing import Any

import httpx
from strands import tool
from strands.types.tools import ToolContext

from app.plugins import services

OPENWEATHERMAP_URL = "https://api.openweathermap.org/data/2.5/weather"
GEOCODING_URL = "https://geocoding-api.open-meteo.com/v1/search"
FORECAST_URL = "https://api.open-meteo.com/v1/forecast"

# WMO weather interpretation codes used by Open-Meteo.
WMO_CODES = {
    0: "clear sky",
    1: "mainly clear",
    2: "partly cloudy",
    3: "overcast",
    45: "fog",
    48: "freezing fog",
    51: "light drizzle",
    53: "drizzle",
    55: "heavy drizzle",
    56: "freezing drizzle",
    57: "freezing drizzle",
    61: "light rain",
    63: "rain",
    65: "heavy rain",
    66: "freezing rain",
    67: "freezing rain",
    71: "light snow",
    73: "snow",
    75: "heavy snow",
    77: "snow grains",
    80: "light showers",
    81: "showers",
    82: "violent showers",
    85: "snow showers",
    86: "heavy snow showers",
    95: "thunderstorm",
    96: "thunderstorm with hail",
    99: "thunderstorm with heavy hail",
}


class WeatherError(ValueError):
    pass


async def _get_json(http: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Any:
    try:
        response = await http.get(url, params=params)
    except httpx.TimeoutException:
        raise WeatherError("the weather service did not answer in time") from None
    except httpx.HTTPError as exc:
        raise WeatherError(f"the weather service could not be reached ({type(exc).__name__})") from None
    if response.status_code == 404:
        return None
    if response.status_code in (401, 403):
        raise WeatherError("the weather service refused the API key (check WEATHER_API_KEY)")
    if response.status_code != 200:
        raise WeatherError(f"the weather service answered with HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise WeatherError("the weather service sent an unreadable answer") from None


async def from_openweathermap(http: httpx.AsyncClient, location: str, api_key: str) -> str:
    data = await _get_json(http, OPENWEATHERMAP_URL, {"q": location, "appid": api_key, "units": "metric"})
    if not data:
        raise WeatherError(f"no place called {location!r} was found")
    try:
        place = ", ".join(p for p in (data["name"], data.get("sys", {}).get("country")) if p)
        main, wind = data["main"], data.get("wind", {})
        description = data["weather"][0]["description"] if data.get("weather") else "no description"
        return (
            f"{place}: {description}, {main['temp']:.0f}°C (feels like {main['feels_like']:.0f}°C), "
            f"humidity {main['humidity']}%, wind {wind.get('speed', 0):.0f} m/s"
        )
    except (KeyError, TypeError, IndexError):
        raise WeatherError("the weather service sent an unexpected answer") from None


async def from_open_meteo(http: httpx.AsyncClient, location: str) -> str:
    found = await _get_json(http, GEOCODING_URL, {"name": location, "count": 1, "language": "en"})
    results = (found or {}).get("results") or []
    if not results:
        raise WeatherError(f"no place called {location!r} was found")
    place = results[0]
    params = {
        "latitude": place["latitude"],
        "longitude": place["longitude"],
        "current": "temperature_2m,apparent_temperature,relative_humidity_2m,wind_speed_10m,weather_code",
        "wind_speed_unit": "ms",
    }
    data = await _get_json(http, FORECAST_URL, params)
    try:
        now = data["current"]
        name = ", ".join(p for p in (place.get("name"), place.get("country")) if p)
        description = WMO_CODES.get(now["weather_code"], "unknown conditions")
        return (
            f"{name}: {description}, {now['temperature_2m']:.0f}°C "
            f"(feels like {now['apparent_temperature']:.0f}°C), "
            f"humidity {now['relative_humidity_2m']:.0f}%, wind {now['wind_speed_10m']:.0f} m/s"
        )
    except (KeyError, TypeError):
        raise WeatherError("the weather service sent an unexpected answer") from None


@tool(context=True)
async def weather(location: str, tool_context: ToolContext) -> str:
    """Get the current weather for a city or place.

    Args:
        location: A city or place name, for example "Paris" or "Paris, FR".
    """
    if not location.strip():
        raise WeatherError("say which place you want the weather for")
    svc = services(tool_context)
    api_key = str(svc.settings.weather_api_key)
    if api_key:
        return await from_openweathermap(svc.http, location, api_key)
    return await from_open_meteo(svc.http, location)
