"""A provider or a brain added by one registry entry: the setting accepts its name,
`.env.example` lists it, and sessions over the real WebSocket use it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from starlette.applications import Starlette
from strands.types.content import Messages
from strands.types.tools import ToolSpec

from app.config import Settings, load_settings
from app.extensions import BRAINS, PROVIDERS, Extension
from app.models import ModelProvider
from app.models.local.brain import BrainEvent, Say
from app.settings_doc import render_env_example
from tests.support import ScriptedModel, connect, of_type, receive_json, receive_until

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def fake_provider(settings: Settings) -> ModelProvider:
    """What a new provider module exports: `(Settings) -> ModelProvider`."""
    return ModelProvider(
        "fake", lambda: ScriptedModel(settings.input_sample_rate, settings.output_sample_rate)
    )


class ParrotBrain:
    name = "parrot"

    async def respond(
        self, messages: Messages, tools: Sequence[ToolSpec], system_prompt: str | None
    ) -> AsyncIterator[BrainEvent]:
        yield Say("Parrot says " + " ".join(c["text"] for c in messages[-1]["content"] if "text" in c))


def parrot_brain(settings: Settings) -> ParrotBrain:
    """What a new brain module exports: `(Settings) -> Brain`."""
    return ParrotBrain()


async def test_a_provider_needs_only_a_registry_entry(
    monkeypatch: pytest.MonkeyPatch, app_factory: Callable[..., Starlette]
) -> None:
    monkeypatch.setitem(PROVIDERS, "fake", Extension(f"{__name__}:fake_provider", "a scripted test model"))

    settings = load_settings({"MODEL_PROVIDER": "fake"}, env_file=None)
    assert "# fake: a scripted test model\nMODEL_PROVIDER=local\n" in render_env_example()
    async with connect(app_factory(None, settings=settings)) as ws:
        session_start = await receive_json(ws)
        assert (session_start["type"], session_start["provider"]) == ("session_start", "fake")
        await ws.send_text(json.dumps({"type": "text", "text": "hello"}))
        seen = await receive_until(ws, "response_complete")
    assert "You said: hello" in [m["text"] for m in of_type(seen, "transcript")]


async def test_a_brain_needs_only_a_registry_entry(
    monkeypatch: pytest.MonkeyPatch, app_factory: Callable[..., Starlette]
) -> None:
    monkeypatch.setitem(BRAINS, "parrot", Extension(f"{__name__}:parrot_brain", "repeats what it hears"))

    environ = {"MODEL_PROVIDER": "local", "LOCAL_BRAIN": "parrot", "LOCAL_AUDIO_LEAD_MS": "10000"}
    settings = load_settings(environ, env_file=None)
    assert "# parrot: repeats what it hears\nLOCAL_BRAIN=rules\n" in render_env_example()
    async with connect(app_factory(None, settings=settings)) as ws:
        session_start = await receive_json(ws)
        assert (session_start["provider"], session_start["model"]) == ("local", "local-parrot")
        await ws.send_text(json.dumps({"type": "text", "text": "hello there"}))
        seen = await receive_until(ws, "transcript", timeout=20, role="assistant", final=True)
    assert seen[-1]["text"] == "Parrot says hello there"
