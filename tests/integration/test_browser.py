"""The voice page in a real headless Chromium against a real server running the offline model.

Chromium's fake microphone plays a WAV of synthesized speech; the test checks what the
page shows (transcripts, the tool call, the answer) and that audio really played. When
it fails, a screenshot is left in the test's temporary folder.

Needs Debian's `chromium` (`.ci/run` installs it); without it this test is skipped.
"""

from __future__ import annotations

import shutil
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.integration.test_server import run_server
from tests.speech import silence, speech
from tests.support import ScriptedProvider

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]
RATE = 48000
COUNT = "((selector) => document.querySelectorAll(selector).length)"


@pytest.fixture
async def microphone_wav(tmp_path: Path) -> Path:
    path = tmp_path / "microphone.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        # Chromium loops the file: long silence after the question keeps it to one turn.
        wav.writeframes(
            silence(1.0, RATE) + await speech("what time is it in tokyo", RATE) + silence(30, RATE)
        )
    return path


@pytest.fixture
async def page(microphone_wav: Path, tmp_path: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_wav}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            await browser.close()


@asynccontextmanager
async def open_page(page: Any, app: Any, tmp_path: Path, path: str = "/") -> AsyncIterator[None]:
    """The page from `app` on a real server, connected; a screenshot is kept if the test fails."""
    async with run_server(app) as (_, port):
        try:
            await page.goto(f"http://127.0.0.1:{port}{path}")
            await page.wait_for_selector("#status[data-state=open]")
            yield
        except BaseException:
            await page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise


async def type_message(page: Any, text: str) -> None:
    await page.fill("#message", text)
    await page.press("#message", "Enter")


async def test_talk_and_type_to_the_offline_agent(
    app_factory: Callable[..., Starlette], page: Any, tmp_path: Path
) -> None:
    # Audio may run ahead of playback: the final transcript of a long reply comes at once.
    app = app_factory(None, model_provider="local", local_audio_lead_ms=10000)
    async with open_page(page, app, tmp_path):
        assert "local" in await page.text_content("#model")

        # Typing gets an answer, with the tool call shown.
        await type_message(page, "what is 12 times 7")
        await page.wait_for_selector(".bubble.assistant:not(.partial):has-text('84')")
        tool = await page.text_content(".bubble.tool")
        assert "calculator" in tool
        assert "→ 84" in tool
        await page.wait_for_function("window.voiceStats.playedSamples > 0.5 * 48000")

        # Speaking: the fake microphone asks for the time in Tokyo. What pocketsphinx
        # makes of it after Chromium's audio processing varies, so the test asks for a
        # recognised utterance and a spoken answer to it, not for particular words.
        played = await page.evaluate("window.voiceStats.playedSamples")
        await page.click("#mic")
        await page.wait_for_function("count('.bubble.user:not(.partial)') === 2".replace("count", COUNT))
        await page.wait_for_function("count('.bubble.assistant:not(.partial)') === 2".replace("count", COUNT))
        heard = await page.locator(".bubble.user").nth(1).text_content()
        assert heard
        assert heard.strip()
        await page.wait_for_function(f"window.voiceStats.playedSamples > {played} + 0.5 * 48000")
        stats = await page.evaluate("window.voiceStats")
        assert stats["sentFrames"] > 50
        assert stats["sessions"] == 1
        assert "error" not in stats["events"]


async def test_the_page_works_with_the_echo_provider(
    app_factory: Callable[..., Starlette], page: Any, tmp_path: Path
) -> None:
    app = app_factory(None, model_provider="echo")
    async with open_page(page, app, tmp_path):
        await type_message(page, "hello from the page")
        await page.wait_for_selector(".bubble.assistant:not(.partial):has-text('hello from the page')")
        await page.click("#mic")  # the echo model plays the microphone back
        await page.wait_for_function("window.voiceStats.playedSamples > 0.5 * 48000")


async def test_the_page_shows_errors_and_reconnects(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, page: Any, tmp_path: Path
) -> None:
    async with open_page(page, app_factory(scripted), tmp_path):
        await type_message(page, "fail")  # the scripted model fails: error, close 1011
        await page.wait_for_selector(".error:has-text('model_error')")
        await page.wait_for_function("window.voiceStats.sessions === 2")  # reconnected by itself
        await page.wait_for_selector("#status[data-state=open]")
        await type_message(page, "still there?")
        await page.wait_for_selector(".bubble.assistant:has-text('You said: still there?')")


async def test_the_page_works_behind_a_path_prefix(
    app_factory: Callable[..., Starlette], page: Any, tmp_path: Path
) -> None:
    prefixed = Starlette(routes=[Mount("/voice", app_factory(None, model_provider="echo"))])
    async with open_page(page, prefixed, tmp_path, "/voice/"):  # the socket is /voice/ws
        await type_message(page, "through a prefix")
        await page.wait_for_selector(".bubble.assistant:has-text('through a prefix')")
