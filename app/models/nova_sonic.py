"""`nova_sonic`: Amazon Nova Sonic through strands' `BedrockNovaSonicModel`.

One boto3 session is made per process (credential resolution is not free) and shared
by every connection's model; each WebSocket session still gets its own model object.

`BEDROCK_ENDPOINT_URL` points the model at another Bedrock Runtime endpoint: a VPC
interface endpoint (PrivateLink), a FIPS endpoint, or a test's fake. strands 1.62 has no
option for it: `BedrockNovaSonicModel.start()` (strands/bidi/models/bedrock.py) passes a
hard-coded `https://bedrock-runtime.{region}.amazonaws.com` to
`AsyncBedrockRuntimeConfig.resolve()`, which it looks up in its module at call time, and
an explicit value wins over the `AWS_ENDPOINT_URL*` variables. The seam below is the
whole workaround: when this module is imported, that name is bound to a subclass whose
`resolve()` swaps in the endpoint of the model now starting (a context variable that
`NovaSonicModel.start` sets), and changes nothing for any other caller. SigV4 still signs
for the configured region, as PrivateLink and FIPS endpoints expect.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import boto3
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from strands.bidi.models import BidiModel, bedrock
from strands.bidi.models.bedrock import BedrockNovaSonicModel
from strands.types.content import Messages
from strands.types.tools import ToolSpec

from app.config import Settings
from app.models import ModelProvider

DEFAULT_MODEL_ID = "amazon.nova-2-5-sonic"

_endpoint: ContextVar[str] = ContextVar("bedrock_endpoint", default="")


class _EndpointConfig(AsyncBedrockRuntimeConfig):  # type: ignore[misc]
    @classmethod
    async def resolve(cls, **kwargs: Any) -> Any:
        if endpoint := _endpoint.get():
            kwargs["endpoint_uri"] = endpoint
        return await AsyncBedrockRuntimeConfig.resolve(**kwargs)


if getattr(bedrock, "AsyncBedrockRuntimeConfig", None) is not AsyncBedrockRuntimeConfig:
    raise ImportError("strands.bidi.models.bedrock changed: BEDROCK_ENDPOINT_URL needs a new seam")
bedrock.AsyncBedrockRuntimeConfig = _EndpointConfig  # type: ignore[attr-defined]


class NovaSonicModel(BedrockNovaSonicModel):
    """strands' model, connecting to `endpoint_url` when one is set."""

    def __init__(self, *, endpoint_url: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
        token = _endpoint.set(self.endpoint_url)
        try:
            await super().start(system_prompt, tools, messages, **kwargs)
        finally:
            _endpoint.reset(token)


def nova_sonic_provider(settings: Settings) -> ModelProvider:
    boto_session = boto3.Session(region_name=settings.aws_region)
    audio: Any = {
        "input": {"sample_rate": settings.input_sample_rate},
        "output": {"sample_rate": settings.output_sample_rate},
    }

    def build() -> BidiModel:
        return NovaSonicModel(
            endpoint_url=settings.bedrock_endpoint_url,
            model_id=settings.model_id or DEFAULT_MODEL_ID,
            boto_session=boto_session,
            audio=audio,
            voice=settings.voice,
        )

    return ModelProvider("nova_sonic", build)
