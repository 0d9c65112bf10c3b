from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from app.models import ModelProvider
from app.plugins import load_tools
from tests.support import TOOLS_DIR, ScriptedProvider


@pytest.fixture(autouse=True, scope="session")
def _no_cloud_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never reach AWS: no credentials, and no instance-metadata lookups."""
    absent = str(tmp_path_factory.mktemp("aws") / "absent")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", absent)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", absent)
        yield


@pytest.fixture(autouse=True, scope="session")
def _no_tracing_env() -> Iterator[None]:
    """No test exports spans to a collector the developer's shell points at (app/tracing.py)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("OTEL_"):
                patch.delenv(name)
        yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(tools_dir=TOOLS_DIR).with_overrides(**overrides)

    return make


@pytest.fixture(scope="session")
def shipped_tools() -> list[Any]:
    return load_tools(TOOLS_DIR)


@pytest.fixture
def scripted() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
async def app_factory(
    settings_factory: Callable[..., Settings], shipped_tools: list[Any]
) -> AsyncIterator[Callable[..., Starlette]]:
    made: list[Starlette] = []

    def make(
        provider: ScriptedProvider | ModelProvider | None = None,
        settings: Settings | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        tools: Sequence[Any] | None = None,
        **setting_overrides: Any,
    ) -> Starlette:
        app = create_app(
            settings or settings_factory(**setting_overrides),
            provider=provider.provider() if isinstance(provider, ScriptedProvider) else provider,
            tools=tools if tools is not None else shipped_tools,
            http_transport=http_transport,
        )
        made.append(app)
        return app

    yield make
    for app in made:  # lifespan does not run under the ASGI WebSocket transport
        await app.state.context.services.aclose()
        app.state.context.provider.close()


@pytest.fixture
def app(app_factory: Callable[..., Starlette], scripted: ScriptedProvider) -> Starlette:
    return app_factory(scripted)
