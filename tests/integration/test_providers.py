"""The shipped providers through the real app: `echo` end to end, `nova_sonic` as built."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.models import provider_from_settings
from tests.support import (
    FakeOpenWeatherMap,
    ScriptedProvider,
    connect,
    expect_close,
    of_type,
    receive_until,
    start,
    tone,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def echo_app(app_factory: Callable[..., Starlette]) -> Starlette:
    return app_factory(None, model_provider="echo")


class TestEchoProvider:
    async def test_text_comes_back_as_assistant_transcript(self, echo_app: Starlette) -> None:
        async with connect(echo_app) as ws:
            info = await start(ws)
            assert (info["provider"], info["model"]) == ("echo", "echo")
            await ws.send_text('{"type":"text","text":"hello echo"}')
            seen = await receive_until(ws, "response_complete")
        assert [m["type"] for m in seen] == [
            "response_start",
            "transcript",
            "transcript",
            "response_complete",
        ]
        assert seen[2] == {**seen[2], "role": "assistant", "text": "hello echo", "final": True}

    async def test_audio_comes_back_at_the_output_rate(self, echo_app: Starlette) -> None:
        # Model rates 16 kHz in, 24 kHz out; the client keeps those defaults.
        async with connect(echo_app) as ws:
            info = await start(ws)
            assert (info["input_sample_rate"], info["output_sample_rate"]) == (16000, 24000)
            for _ in range(25):  # 0.5 s in 20 ms frames
                await ws.send_bytes(tone(320))
            seen = await receive_until(ws, "response_complete", timeout=5)
        audio = of_type(seen, "audio")
        samples = sum(len(base64.b64decode(a["audio"])) for a in audio) // 2
        assert {a["sample_rate"] for a in audio} == {24000}
        # 8000 samples in: about 12000 out, less the resampler's delay.
        assert 11000 <= samples <= 12000
        assert seen[0]["type"] == "response_start"

    async def test_tool_command_runs_calculator_through_the_agent(self, echo_app: Starlette) -> None:
        async with connect(echo_app) as ws:
            await start(ws)
            await ws.send_text(
                json.dumps({"type": "text", "text": '/tool calculator {"expression": "12*7"}'})
            )
            seen = await receive_until(ws, "transcript", final=True)
        assert of_type(seen, "tool_use")[0]["input"] == {"expression": "12*7"}
        assert of_type(seen, "tool_result")[0]["content"] == "84"
        assert seen[-1]["text"] == "calculator says: 84"

    async def test_tool_command_with_bad_json_is_answered(self, echo_app: Starlette) -> None:
        async with connect(echo_app) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"text": "/tool calculator {oops"}))
            seen = await receive_until(ws, "transcript", final=True)
        assert "not valid JSON" in seen[-1]["text"]

    async def test_unknown_tool_is_reported_by_the_agent(self, echo_app: Starlette) -> None:
        async with connect(echo_app) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"text": "/tool teleport {}"}))
            seen = await receive_until(ws, "transcript", final=True)
        assert of_type(seen, "tool_result")[0]["status"] == "error"
        assert seen[-1]["text"].startswith("teleport failed")


class TestWeatherThroughTheAgent:
    async def test_weather_tool_uses_the_app_http_client(
        self, app_factory: Callable[..., Starlette], scripted: ScriptedProvider
    ) -> None:
        weather = FakeOpenWeatherMap()
        app = app_factory(scripted, http_transport=weather.transport, weather_api_key="k")
        async with connect(app) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"text": 'use weather {"location": "Paris"}'}))
            seen = await receive_until(ws, "tool_result")
        assert seen[-1]["status"] == "success"
        assert seen[-1]["content"].startswith("Paris, FR: clear sky, 21°C")
        assert weather.requests[0].url.host == "api.openweathermap.org"


class TestNovaSonicProvider:
    def test_builds_strands_nova_sonic_model_from_settings(self) -> None:
        from strands.bidi.models.bedrock import BedrockNovaSonicModel

        settings = Settings(
            model_provider="nova_sonic",
            aws_region="eu-north-1",
            voice="tiffany",
            input_sample_rate=16000,
            output_sample_rate=24000,
        )
        provider = provider_from_settings(settings)
        model = provider.build()
        assert provider.name == "nova_sonic"
        assert isinstance(model, BedrockNovaSonicModel)
        assert model.model_id == "amazon.nova-2-5-sonic"
        assert model.region == "eu-north-1"
        audio = model.get_audio_config()
        assert (audio["input"]["sample_rate"], audio["output"]["sample_rate"]) == (16000, 24000)
        assert provider.build() is not model  # one model per session

    async def test_the_endpoint_seam_changes_only_a_model_with_an_endpoint(self) -> None:
        # strands resolves its client config through this name at start(); without
        # BEDROCK_ENDPOINT_URL the regional endpoint it passes must be left alone.
        from strands.bidi.models import bedrock

        from app.models.nova_sonic import NovaSonicModel, _endpoint

        regional = "https://bedrock-runtime.eu-north-1.amazonaws.com"
        resolve = bedrock.AsyncBedrockRuntimeConfig.resolve  # type: ignore[attr-defined]
        transport = object()  # not used by resolve(); avoids building a default HTTP client
        config = await resolve(endpoint_uri=regional, region="eu-north-1", transport=transport)
        assert config.endpoint_uri == regional
        token = _endpoint.set("https://vpce-1.bedrock-runtime.eu-north-1.vpce.amazonaws.com")
        try:
            config = await resolve(endpoint_uri=regional, region="eu-north-1", transport=transport)
        finally:
            _endpoint.reset(token)
        assert config.endpoint_uri == "https://vpce-1.bedrock-runtime.eu-north-1.vpce.amazonaws.com"
        model = provider_from_settings(
            Settings(model_provider="nova_sonic", bedrock_endpoint_url="https://fips.example")
        ).build()
        assert isinstance(model, NovaSonicModel)
        assert model.endpoint_url == "https://fips.example"

    async def test_session_start_reports_nova_without_touching_the_network(
        self, app_factory: Callable[..., Starlette]
    ) -> None:
        # No credentials here: the model fails at start, which the client sees as model_error.
        app = app_factory(None, model_provider="nova_sonic", model_id="amazon.nova-sonic-v1:0")
        async with connect(app) as ws:
            info = (await receive_until(ws, "session_start"))[-1]
            assert (info["provider"], info["model"]) == ("nova_sonic", "amazon.nova-sonic-v1:0")
            seen, code = await expect_close(ws)
        assert code == 1011
        assert of_type(seen, "error")[0]["code"] == "model_error"
