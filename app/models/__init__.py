"""Model providers behind one seam: `ModelProvider` builds a fresh `BidiModel` per session.

`MODEL_PROVIDER` picks one from the registry (`app/extensions.py` `PROVIDERS`); tests and
embedders pass their own `ModelProvider` to `create_app` instead of patching anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from strands.bidi.models import BidiModel

from app.config import Settings
from app.extensions import PROVIDERS, factory


@dataclass(frozen=True, slots=True)
class ModelProvider:
    name: str
    build: Callable[[], BidiModel]
    # Releases what the provider shares between sessions (worker threads, decoders).
    close: Callable[[], None] = lambda: None


def provider_from_settings(settings: Settings) -> ModelProvider:
    return factory(PROVIDERS, "MODEL_PROVIDER", settings.model_provider)(settings)
