"""Observability through `python -m app`, so uvicorn's logging config is the real one:
LOG_FORMAT=json lines (every one parsed), with no token or user words in any of them, and
spans exported over OTLP/HTTP to a collector on loopback, carrying the session id."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import (
    TOOLS_DIR,
    connect_ws,
    expect_close,
    free_port,
    handshake,
    logged_server,
    receive_until,
    run_server,
    start,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEY = "the-api-key-0123456789"
# What a user says; it reaches the model, a tool's input and that tool's exception message.
UTTERANCE = "my neighbour Quillfeather hid the spare key under the blue pot"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# A plugin tool that fails the way many do: by raising, with its input in the message.
LOOKUP_PLUGIN = """
from typing import Any

from strands.types.tools import AgentTool, ToolGenerator, ToolSpec, ToolUse


class Lookup(AgentTool):
    @property
    def tool_name(self) -> str:
        return "lookup"

    @property
    def tool_spec(self) -> ToolSpec:
        schema = {"type": "object", "properties": {"phrase": {"type": "string"}}}
        return {"name": "lookup", "description": "Looks a phrase up.", "inputSchema": {"json": schema}}

    @property
    def tool_type(self) -> str:
        return "python"

    async def stream(
        self, tool_use: ToolUse, invocation_state: dict[str, Any], **kwargs: Any
    ) -> ToolGenerator:
        raise LookupError(f"nothing found for {tool_use['input']['phrase']}")
        yield


lookup = Lookup()
"""


def text(message: str) -> str:
    return json.dumps({"type": "text", "text": message})


async def test_json_log_lines_are_structured_and_hold_no_token_or_user_words(tmp_path: Path) -> None:
    (tmp_path / "lookup.py").write_text(LOOKUP_PLUGIN)
    port = free_port()
    env = {
        "PORT": str(port),
        "MODEL_PROVIDER": "echo",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "AUTH_TOKENS": KEY,
        "TOOLS_DIR": str(tmp_path),
    }
    lines: list[str] = []
    async with logged_server(env, lines), httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/health?token={KEY}")).status_code == 200
        refused = await handshake(client, f"http://127.0.0.1:{port}/ws?token=not-the-key-0123456789")
        assert refused.status_code == 401
        async with connect_ws(f"ws://127.0.0.1:{port}/ws?token={KEY}", client) as ws:
            session_id = (await start(ws))["session_id"]
            await ws.send_text(text(UTTERANCE))
            await receive_until(ws, "transcript", role="assistant", final=True)
            await ws.send_text(text(f"/tool lookup {json.dumps({'phrase': UTTERANCE})}"))
            result = (await receive_until(ws, "tool_result"))[-1]
            assert result["status"] == "error"
            assert UTTERANCE in result["content"]  # the model is told why, with the words
            await ws.send_text(json.dumps({"type": "end"}))
            await expect_close(ws)

    output = "".join(lines)
    assert KEY not in output
    assert "Quillfeather" not in output
    records: list[dict[str, Any]] = []
    for line in output.splitlines():
        record = json.loads(line)  # every line, uvicorn's and other libraries' too
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        assert TIME.fullmatch(record["time"]), line
        records.append(record)

    def one(logger: str, prefix: str) -> dict[str, Any]:
        found = [r for r in records if r["logger"] == logger and r["message"].startswith(prefix)]
        assert len(found) == 1, (logger, prefix, found)
        return found[0]

    started = one("app.session", "session started")
    assert (started["session_id"], started["provider"], started["principal"]) == (
        session_id,
        "echo",
        "api-key #1",
    )
    closed = one("app.session", "session closed")
    assert (closed["session_id"], closed["reason"], closed["code"]) == (session_id, "client_end", 1000)
    assert isinstance(closed["duration_s"], float)
    failed = one("app.timed_tool", "tool lookup raised LookupError")
    assert (failed["level"], failed["session_id"]) == ("ERROR", session_id)
    assert "lookup.py" in failed["message"]  # where it was raised, without what it said
    refusal = one("app.edge.refusals", "refused: reason=unauthorized")
    assert (refusal["level"], refusal["reason"]) == ("WARNING", "unauthorized")
    assert "session_id" not in refusal  # not in a session
    # The refusal's line is the edge's; websockets' own line for it is dropped.
    assert not [r for r in records if r["message"].startswith("connection rejected")]
    access = one("uvicorn.access", "127.0.0.1")
    assert (access["method"], access["path"], access["status"]) == ("GET", "/health?token=[redacted]", 200)
    accepted = [r for r in records if r["message"].endswith('"WebSocket /ws?token=[redacted]" [accepted]')]
    assert [r["session_id"] for r in accepted] == [session_id]


class Collector:
    """An OTLP/HTTP trace receiver: what the exporter posts to /v1/traces, decoded."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Any]] = []  # (resource attributes, span)
        self.session_span_arrived = anyio.Event()  # a flag here: only read after the fact
        self.app = Starlette(routes=[Route("/v1/traces", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in export.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((resource, span))
                    if span.name == "voice.session":
                        self.session_span_arrived.set()
        body = ExportTraceServiceResponse().SerializeToString()
        return Response(body, media_type="application/x-protobuf")


def attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


async def test_spans_reach_a_collector_with_the_session_id() -> None:
    collector = Collector()
    port = free_port()
    lines: list[str] = []
    async with run_server(collector.app) as (_, collector_port):
        env = {
            "PORT": str(port),
            "MODEL_PROVIDER": "echo",
            "LOG_LEVEL": "INFO",
            "TOOLS_DIR": str(TOOLS_DIR),
            # Standard variables only: the endpoint (the exporter adds /v1/traces), the
            # service's name, and a batch delay longer than the test, so the spans arrive
            # only because stopping the server flushes them.
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "OTEL_SERVICE_NAME": "voice-test",
        }
        async with logged_server(env, lines), httpx.AsyncClient() as client:
            async with connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
                session_id = (await start(ws))["session_id"]
                await ws.send_text(text('/tool calculator {"expression": "6*7"}'))
                await receive_until(ws, "tool_result")
                await ws.send_text(json.dumps({"type": "end"}))
                await expect_close(ws)
            assert not collector.spans
        # The server has stopped (SIGTERM), and its spans were sent before it exited.
        assert collector.session_span_arrived.is_set()

    spans = {
        span.name.removesuffix(" Strands Agents"): (resource, span) for resource, span in collector.spans
    }
    resource, session = spans["voice.session"]
    assert resource["service.name"] == "voice-test"
    assert attributes(session.attributes) == {
        "session.id": session_id,
        "voice.close.reason": "client_end",
        "voice.close.code": 1000,
    }
    # strands' spans are the session span's descendants, and each carries the session id.
    _, agent = spans["bidi_session"]
    assert agent.parent_span_id == session.span_id
    assert {"bidi_connect", "bidi_response", "execute_tool calculator"} <= spans.keys()
    for _, span in collector.spans:
        assert span.trace_id == session.trace_id, span.name
        assert attributes(span.attributes)["session.id"] == session_id, span.name
