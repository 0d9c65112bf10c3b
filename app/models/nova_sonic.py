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

The same seam hands strands' HTTP/2 client a deadline on connecting
(`MODEL_CONNECT_TIMEOUT`): awscrt never reports a TLS handshake that fails, so without
it a misconfigured endpoint or an untrusted certificate leaves the session waiting for
the model forever.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class _Target:
    endpoint: str  # empty: the regional endpoint strands passes
    connect_timeout: float


_target: ContextVar[_Target | None] = ContextVar("bedrock_target", default=None)


class _DeadlineClient(bedrock._BedrockAWSCRTHTTPClient):
    """strands' HTTP/2 client with a deadline on opening a connection: when the TLS
    handshake fails (say, an endpoint whose certificate is not trusted) awscrt never
    reports it, and the session would wait for the model forever."""

    def __init__(self, connect_timeout: float) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    async def _create_connection(self, url: Any) -> Any:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await super()._create_connection(url)
        except TimeoutError:
            raise ConnectionError(
                f"no connection to {url.host}:{url.port or 443} within {self.connect_timeout:g} s "
                "(is BEDROCK_ENDPOINT_URL reachable, and its certificate trusted?)"
            ) from None


class _EndpointConfig(AsyncBedrockRuntimeConfig):  # type: ignore[misc]
    @classmethod
    async def resolve(cls, **kwargs: Any) -> Any:
        target = _target.get()
        if target is not None:
            if target.endpoint:
                kwargs["endpoint_uri"] = target.endpoint
            kwargs["transport"] = _DeadlineClient(target.connect_timeout)
        return await AsyncBedrockRuntimeConfig.resolve(**kwargs)


if getattr(bedrock, "AsyncBedrockRuntimeConfig", None) is not AsyncBedrockRuntimeConfig:
    raise ImportError("strands.bidi.models.bedrock changed: BEDROCK_ENDPOINT_URL needs a new seam")
bedrock.AsyncBedrockRuntimeConfig = _EndpointConfig  # type: ignore[attr-defined]


class NovaSonicModel(BedrockNovaSonicModel):
    """strands' model, connecting to `endpoint_url` when one is set, within `connect_timeout`."""

    def __init__(self, *, endpoint_url: str = "", connect_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url
        self.connect_timeout = connect_timeout

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
        token = _target.set(_Target(self.endpoint_url, self.connect_timeout))
        try:
            await super().start(system_prompt, tools, messages, **kwargs)
        finally:
            _target.reset(token)


def nova_sonic_provider(settings: Settings) -> ModelProvider:
    boto_session = boto3.Session(region_name=settings.aws_region)
    audio: Any = {
        "input": {"sample_rate": settings.input_sample_rate},
        "output": {"sample_rate": settings.output_sample_rate},
    }

    def build() -> BidiModel:
        return NovaSonicModel(
            endpoint_url=settings.bedrock_endpoint_url,
            connect_timeout=settings.model_connect_timeout,
            model_id=settings.model_id or DEFAULT_MODEL_ID,
            boto_session=boto_session,
            audio=audio,
            voice=settings.voice,
        )

    return ModelProvider("nova_sonic", build)
