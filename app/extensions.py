"""The extension points: the model providers `MODEL_PROVIDER` names and the brains
`LOCAL_BRAIN` names, one dict each, as uvicorn's `config.py` keeps its loop and protocol
choices.

Each entry is the import string of a factory that takes the `Settings` and a line for
`.env.example`. The settings' accepted values and error messages, `provider_from_settings`,
the local model's brain and `.env.example` all read these dicts, so a new provider or
brain is one entry here plus the module it names. A factory is imported only when it is
chosen: `nova_sonic`'s boto3 and awscrt, or the text model's SDKs, load only for
deployments that use them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

from app.errors import ConfigError

if TYPE_CHECKING:  # only for types: these modules import this one
    from app.config import Settings
    from app.models import ModelProvider
    from app.models.local.brain import Brain


@dataclass(frozen=True, slots=True)
class Extension[T]:
    """`factory` is "package.module:function", a `(Settings) -> T`."""

    factory: str
    description: str  # one line, written to .env.example after the name


PROVIDERS: dict[str, Extension[ModelProvider]] = {
    "local": Extension(
        "app.models.local:local_provider",
        "offline speech-to-speech (pocketsphinx + a brain + espeak-ng), no cloud account",
    ),
    "echo": Extension(
        "app.models.echo:echo_provider",
        'echoes text and audio back, runs tools via "/tool NAME {json}" (diagnostics, load tests)',
    ),
    "nova_sonic": Extension(
        "app.models.nova_sonic:nova_sonic_provider",
        "Amazon Nova Sonic on Bedrock (production)",
    ),
}

BRAINS: dict[str, Extension[Brain]] = {
    "rules": Extension(
        "app.models.local.rules:rules_brain",
        "a deterministic offline intent engine (arithmetic, time, weather, help)",
    ),
    "text_model": Extension(
        "app.models.local.text_model:text_model_brain",
        "a Strands text model given by LOCAL_TEXT_MODEL",
    ),
}


def factory[T](extensions: Mapping[str, Extension[T]], key: str, name: str) -> Callable[[Settings], T]:
    """The factory registered as `name`, imported now; `key` names the setting in errors."""
    try:
        extension = extensions[name]
    except KeyError:
        # Settings built in code skip the parser that would have refused the name.
        allowed = ", ".join(extensions)
        raise ConfigError(f"{key}={name!r} is not valid; allowed values: {allowed}") from None
    module, _, attribute = extension.factory.partition(":")
    built: Callable[[Settings], T] = getattr(import_module(module), attribute)
    return built
