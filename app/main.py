"""`create_app(settings)` builds the Starlette app: `/ws`, `/ping`, `/health`, `/ready`,
`/metrics` (unless METRICS_PORT serves them apart), and the voice page (static files from
`app/static`) at `/`.

No import-time side effects: settings, tools and the model provider are resolved when
the app is built, so a bad setting or plugin fails there, with a message naming it.
Uvicorn runs `app.main:create_app` as a factory (see `python -m app`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strands.types.tools import AgentTool

from app.config import Settings, load_settings
from app.drain import DRAIN_KEY, Drain, refuse_while_draining
from app.edge.agentcore import agentcore_session_id
from app.edge.auth import auth_check
from app.edge.capacity import Capacity, admission
from app.edge.gate import Gate
from app.edge.origin import origin_check
from app.edge.refusals import Refusals
from app.edge.transport import LIMITS_KEY, TransportLimits
from app.logs import install_record_factory
from app.metrics import Exporter, Metrics
from app.models import ModelProvider, provider_from_settings
from app.plugins import ToolServices, load_tools
from app.registry import SessionRegistry
from app.session import Session, SessionContext
from app.timed_tool import TimedTool
from app.tracing import configure_tracing, flush_tracing
from app.workers import ProcessWorkers

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    settings: Settings | None = None,
    *,
    provider: ModelProvider | None = None,
    tools: Sequence[AgentTool] | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    settings = settings or load_settings()
    install_record_factory()
    configure_tracing()  # only when the OTEL_* environment asks for it (app/tracing.py)
    http = httpx.AsyncClient(transport=http_transport, timeout=settings.tool_http_timeout)
    offered = tools if tools is not None else load_tools(settings.tools_dir)
    metrics = Metrics()
    context = SessionContext(
        settings=settings,
        provider=provider or provider_from_settings(settings),
        tools=tuple(TimedTool(tool, settings.tool_timeout, metrics.tool_called) for tool in offered),
        services=ToolServices(settings=settings, http=http, workers=ProcessWorkers(settings.tool_processes)),
        registry=SessionRegistry(),
        refusals=Refusals(),
        metrics=metrics,
        # A closed session takes up to STOP_TIMEOUT to say goodbye and as long to stop its model.
        drain=Drain(settings.drain_timeout, close_within=2 * settings.stop_timeout + 1.0),
    )
    exporter = Exporter(
        metrics,
        context.registry,
        context.refusals,
        host=settings.host,
        port=settings.metrics_port,
        multiproc_dir=settings.prometheus_multiproc_dir,
    )

    capacity = Capacity(settings.max_sessions)
    # In order; a check that is off is None and costs nothing.
    gate = Gate(
        checks=(
            refuse_while_draining(context.drain),  # first: a process going away does no more work
            origin_check(settings.allowed_origins),
            auth_check(settings, http),
            agentcore_session_id,
            admission(capacity),  # last: it reserves the session's slot
        ),
        refusals=context.refusals,
    )

    async def websocket_endpoint(websocket: WebSocket) -> None:
        admitted = await gate.admit(websocket)
        if admitted is not None:
            await Session(websocket, context, admitted).serve()

    async def ping(request: Request) -> JSONResponse:
        # Bedrock AgentCore Runtime health contract: HealthyBusy keeps a runtime session
        # (its microVM) alive while we work, and at capacity says there is no room. Busy
        # while any session is open covers both: a session holds its capacity slot only
        # while it is registered (docs/protocol.md, "HTTP endpoints"). Draining is busy too:
        # no room for a new session, and the ones finishing must be left to finish.
        registry = context.registry
        status = "HealthyBusy" if len(registry) or context.drain.draining else "Healthy"
        return JSONResponse({"status": status, "time_of_last_update": int(registry.last_change)})

    async def ready(request: Request) -> JSONResponse:
        # Readiness (Kubernetes, load balancers): whether a new session would be admitted.
        # At capacity the process is alive and serving, just not taking more: 503 routes
        # new clients elsewhere without touching the sessions it holds. Draining: the same,
        # until the process exits (app/drain.py).
        if context.drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if capacity.full:
            return JSONResponse({"status": "full"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def health(request: Request) -> JSONResponse:
        refused = dict(context.refusals.counts)
        body = {
            "status": "ok",
            "sessions": len(context.registry),
            "refused": refused,
            "time": int(time.time()),
        }
        return JSONResponse(body)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        try:
            async with anyio.create_task_group() as tasks, exporter.running():
                # In the background, so serving starts at once; the first tool call then
                # finds a worker process ready.
                tasks.start_soon(context.services.workers.prewarm)
                # The lifespan state is what uvicorn hands its protocols (and our server,
                # app/server.py): the transport limits and the drain.
                yield {LIMITS_KEY: TransportLimits.of(settings, context.refusals), DRAIN_KEY: context.drain}
        finally:
            await context.services.aclose()
            context.provider.close()
            await flush_tracing()

    app = Starlette(
        routes=[
            WebSocketRoute("/ws", websocket_endpoint),
            Route("/ping", ping),
            Route("/health", health),
            Route("/ready", ready),
            *exporter.routes(),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page"),
        ],
        lifespan=lifespan,
    )
    app.state.context = context
    return app
