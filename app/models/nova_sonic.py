"""`nova_sonic`: Amazon Nova Sonic through strands' `BedrockNovaSonicModel`.

One boto3 session is made per process (credential resolution is not free) and shared
by every connection's model; each WebSocket session still gets its own model object.
"""

from __future__ import annotations

from typing import Any

import boto3
from strands.bidi.models import BidiModel

from app.config import Settings
from app.models import ModelProvider

DEFAULT_MODEL_ID = "amazon.nova-2-5-sonic"


def nova_sonic_provider(settings: Settings) -> ModelProvider:
    from strands.bidi.models.bedrock import BedrockNovaSonicModel

    boto_session = boto3.Session(region_name=settings.aws_region)
    audio: Any = {
        "input": {"sample_rate": settings.input_sample_rate},
        "output": {"sample_rate": settings.output_sample_rate},
    }

    def build() -> BidiModel:
        model: BidiModel = BedrockNovaSonicModel(
            model_id=settings.model_id or DEFAULT_MODEL_ID,
            boto_session=boto_session,
            audio=audio,
            voice=settings.voice,
        )
        return model

    return ModelProvider("nova_sonic", build)
