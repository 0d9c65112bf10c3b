"""The voice page's files are served by the app, with the socket URL derived from the page."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def get(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        return await client.get(path)


async def test_page_is_served_at_root(app: Starlette) -> None:
    response = await get(app, "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in response.text  # relative: works under a prefix


@pytest.mark.parametrize("name", ["app.js", "capture-worklet.js", "playback-worklet.js", "style.css"])
async def test_assets_are_served(app: Starlette, name: str) -> None:
    response = await get(app, f"/{name}")
    assert response.status_code == 200
    assert response.text


async def test_page_script_uses_audio_worklets_and_a_relative_socket(app: Starlette) -> None:
    script = (await get(app, "/app.js")).text
    assert "audioWorklet.addModule" in script
    assert "ScriptProcessor" not in script
    assert 'new URL("ws", location.href)' in script
    assert '"wss:"' in script


async def test_health_routes_still_win_over_the_page(app: Starlette) -> None:
    assert (await get(app, "/health")).json()["status"] == "ok"
    assert (await get(app, "/nope.js")).status_code == 404
