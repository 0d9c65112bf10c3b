"""The weather tool against httpx mock transports: never the network."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import FakeOpenWeatherMap, load_tool_module

weather = load_tool_module("weather")
pytestmark = pytest.mark.anyio


def open_meteo_handler(calls: list[httpx.Request]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.host == "geocoding-api.open-meteo.com":
            if request.url.params["name"] == "Atlantis":
                return httpx.Response(200, json={"generationtime_ms": 0.1})
            return httpx.Response(
                200,
                json={
                    "results": [{"name": "Paris", "country": "France", "latitude": 48.85, "longitude": 2.35}]
                },
            )
        assert request.url.host == "api.open-meteo.com"
        assert request.url.params["latitude"] == "48.85"
        return httpx.Response(
            200,
            json={
                "current": {
                    "temperature_2m": 17.4,
                    "apparent_temperature": 16.2,
                    "relative_humidity_2m": 71,
                    "wind_speed_10m": 3.6,
                    "weather_code": 2,
                }
            },
        )

    return handle


async def test_open_meteo_without_key() -> None:
    calls: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(open_meteo_handler(calls))) as http:
        text = await weather.from_open_meteo(http, "Paris")
    assert text == "Paris, France: partly cloudy, 17°C (feels like 16°C), humidity 71%, wind 4 m/s"
    assert [c.url.host for c in calls] == ["geocoding-api.open-meteo.com", "api.open-meteo.com"]


async def test_unknown_place() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(open_meteo_handler([]))) as http:
        with pytest.raises(weather.WeatherError, match="no place called 'Atlantis'"):
            await weather.from_open_meteo(http, "Atlantis")


async def test_openweathermap_with_key() -> None:
    fake = FakeOpenWeatherMap(description="light rain", temp=11.6, humidity=88)
    async with httpx.AsyncClient(transport=fake.transport) as http:
        text = await weather.from_openweathermap(http, "Paris", "k3y")
    assert text == "Paris, FR: light rain, 12°C (feels like 11°C), humidity 88%, wind 2 m/s"
    assert fake.requests[0].url.params["appid"] == "k3y"
    assert fake.requests[0].url.params["units"] == "metric"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(401, json={}), "refused the API key"),
        (httpx.Response(500, text="oops"), "HTTP 500"),
        (httpx.Response(200, text="<html>"), "unreadable answer"),
        (httpx.Response(200, json={"main": {}}), "unexpected answer"),
        (httpx.Response(404, json={"cod": "404"}), "no place called"),
    ],
)
async def test_service_errors_are_clear(response: httpx.Response, message: str) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: response)) as http:
        with pytest.raises(weather.WeatherError, match=message):
            await weather.from_openweathermap(http, "Paris", "k3y")


async def test_timeout_is_reported() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as http:
        with pytest.raises(weather.WeatherError, match="did not answer in time"):
            await weather.from_open_meteo(http, "Paris")


def test_tool_spec_takes_location_only() -> None:
    schema = weather.weather.tool_spec["inputSchema"]["json"]
    assert list(schema["properties"]) == ["location"]
    assert "tool_context" not in json.dumps(schema)
