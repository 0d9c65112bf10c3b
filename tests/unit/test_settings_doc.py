from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from app.config import Settings, setting_of
from app.settings_doc import render_env_example

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_the_committed_env_example_is_the_rendered_one() -> None:
    assert ENV_EXAMPLE.read_text() == render_env_example(), (
        ".env.example is out of date with app/config.py: run `make env-example`"
    )


def test_a_field_declared_without_setting_is_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Extended(Settings):
        extra: int = 3

    with pytest.raises(
        TypeError, match=r"Settings.extra is not declared with setting\(default, parser, doc\)"
    ):
        setting_of(fields(Extended)[-1])
