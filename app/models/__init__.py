"""Model providers behind one seam: `ModelProvider` builds a fresh `BidiModel` per session.

`MODEL_PROVIDER` picks one from `providers()`; tests and embedders pass their own
`ModelProvider` to `create_app` instead of patching anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from strands.bidi.models import BidiModel

from app.config import Settings
from app.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ModelProvider:
    name: str
    build: Callable[[], BidiModel]
    # Releases what the provider shares between sessions (worker threads, decoders).
    close: Callable[[], None] = lambda: None


def _echo(settings: Settings) -> ModelProvider:
    from app.models.echo import EchoModel

    def build() -> BidiModel:
        return EchoModel(
            model_id=settings.model_id or "echo",
            input_sample_rate=settings.input_sample_rate,
            output_sample_rate=settings.output_sample_rate,
            queue_size=settings.audio_queue_size,
        )

    return ModelProvider("echo", build)


def _local(settings: Settings) -> ModelProvider:
    from app.models.local import local_provider

    return local_provider(settings)


def _nova_sonic(settings: Settings) -> ModelProvider:
    from app.models.nova_sonic import nova_sonic_provider

    return nova_sonic_provider(settings)


_FACTORIES: dict[str, Callable[[Settings], ModelProvider]] = {
    "local": _local,
    "echo": _echo,
    "nova_sonic": _nova_sonic,
}


def provider_from_settings(settings: Settings) -> ModelProvider:
    try:
        factory = _FACTORIES[settings.model_provider]
    except KeyError:
        allowed = ", ".join(_FACTORIES)
        raise ConfigError(
            f"MODEL_PROVIDER={settings.model_provider!r} is not valid; allowed values: {allowed}"
        ) from None
    return factory(settings)
