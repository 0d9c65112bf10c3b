from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from app.config import Settings, load_settings
from app.errors import ConfigError
from app.extensions import BRAINS, PROVIDERS, Extension, factory
from app.models import provider_from_settings
from app.models.local import local_provider
from app.models.local.brain import GrammarBrain

EXTENSION_POINTS = [
    pytest.param("MODEL_PROVIDER", PROVIDERS, id="providers"),
    pytest.param("LOCAL_BRAIN", BRAINS, id="brains"),
]


@pytest.mark.parametrize(
    ("extensions", "name"),
    [pytest.param(PROVIDERS, name, id=name) for name in PROVIDERS]
    + [pytest.param(BRAINS, name, id=name) for name in BRAINS],
)
def test_every_entry_names_a_factory(extensions: Mapping[str, Extension[Any]], name: str) -> None:
    assert callable(factory(extensions, "SETTING", name))


@pytest.mark.parametrize(("key", "extensions"), EXTENSION_POINTS)
def test_an_unknown_name_lists_the_registered_ones(
    monkeypatch: pytest.MonkeyPatch, key: str, extensions: dict[str, Extension[Any]]
) -> None:
    monkeypatch.setitem(extensions, "fake", Extension("tests.absent:factory", "registered by this test"))
    allowed = ", ".join(extensions)
    assert allowed.endswith(", fake")
    with pytest.raises(ConfigError) as info:
        load_settings({key: "nope"}, env_file=None)
    assert str(info.value) == f"{key}='nope' is not valid; allowed values: {allowed}"


def test_settings_built_in_code_with_an_unknown_name_fail_with_the_same_message() -> None:
    with pytest.raises(ConfigError, match="MODEL_PROVIDER='nope' is not valid; allowed values: local, echo"):
        provider_from_settings(Settings(model_provider="nope"))
    with pytest.raises(
        ConfigError, match="LOCAL_BRAIN='nope' is not valid; allowed values: rules, text_model"
    ):
        local_provider(Settings(local_brain="nope"))


def test_text_model_brain_needs_a_text_model() -> None:
    with pytest.raises(ConfigError, match="LOCAL_BRAIN=text_model needs LOCAL_TEXT_MODEL"):
        factory(BRAINS, "LOCAL_BRAIN", "text_model")(Settings(local_brain="text_model"))


def test_only_the_rules_brain_restricts_the_recognizer_to_a_grammar() -> None:
    def brain(name: str, **settings: Any) -> object:
        return factory(BRAINS, "LOCAL_BRAIN", name)(Settings(local_brain=name, **settings))

    assert isinstance(brain("rules"), GrammarBrain)
    assert not isinstance(
        brain("text_model", local_text_model="openai:m@http://127.0.0.1:9/v1"), GrammarBrain
    )
