"""`GET /metrics`: what sessions, tools, errors, refusals and the event loop do shows in
Prometheus' text format, on the main port or on METRICS_PORT alone, and summed over
processes that share a PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.serving import server_options
from tests.support import (
    ScriptedProvider,
    connect,
    connect_ws,
    expect_close,
    free_port,
    handshake,
    receive_json,
    receive_until,
    run_server,
    scrape,
    scrape_until,
    serve_subprocess,
    start,
    tone,
    wait_closed,
    wait_ready,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def wire_size(frame: Any) -> int:
    """A received frame's payload bytes: JSON is re-encoded as the server encodes it."""
    if isinstance(frame, bytes):
        return len(frame)
    return len(json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode())


async def test_a_conversation_moves_the_session_traffic_and_turn_metrics(app: Starlette) -> None:
    async with connect(app, "audio=binary") as ws:
        seen: list[Any] = [await receive_json(ws), await receive_json(ws)]  # session and connection start
        during = await scrape(app)
        await ws.send_bytes(tone(3200))  # 200 ms at 16 kHz: a spoken turn, said back
        seen += await receive_until(ws, "response_complete")
        await ws.send_text(json.dumps({"type": "text", "text": "hello"}))  # answered with 100 ms
        seen += await receive_until(ws, "response_complete")
        await ws.send_text(json.dumps({"type": "end"}))
        rest, code = await expect_close(ws)
        seen += rest
    await wait_closed(app)
    after = await scrape(app)
    assert code == 1000
    assert during("voice_sessions_active") == 1
    assert after("voice_sessions_active") == 0
    assert after("voice_sessions_started_total") == 1
    assert after("voice_sessions_ended_total", reason="client_end") == 1
    assert after("voice_session_duration_seconds_count") == 1
    assert after("voice_frames_total", direction="in") == 3  # audio, text, end
    assert after("voice_frames_total", direction="out") == len(seen)
    assert after("voice_sent_bytes_total") == sum(wire_size(frame) for frame in seen)
    assert after("voice_audio_seconds_total", direction="in") == pytest.approx(0.2)
    assert after("voice_audio_seconds_total", direction="out") == pytest.approx(0.3)
    # One answer timed per turn: after the user's final transcript, after the text.
    assert after("voice_turn_latency_seconds_count") == 2
    assert 0 < after("voice_turn_latency_seconds_sum") < 2


async def test_tool_calls_are_counted_by_tool_and_status_with_their_duration(app: Starlette) -> None:
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "calculate 6*7"}))
        assert (await receive_until(ws, "tool_result", timeout=10))[-1]["status"] == "success"
        await ws.send_text(json.dumps({"type": "text", "text": "calculate 1/0"}))
        assert (await receive_until(ws, "tool_result", timeout=10))[-1]["status"] == "error"
        metrics = await scrape(app)
    assert metrics("voice_tool_calls_total", tool="calculator", status="success") == 1
    assert metrics("voice_tool_calls_total", tool="calculator", status="error") == 1
    assert metrics("voice_tool_call_duration_seconds_count", tool="calculator") == 2
    assert metrics("voice_tool_call_duration_seconds_sum", tool="calculator") > 0


async def test_error_messages_are_counted_by_code(app: Starlette) -> None:
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text("not json")
        await receive_until(ws, "error", code="invalid_json")
        await ws.send_bytes(b"\x00\x01\x02")
        await receive_until(ws, "error", code="odd_byte_count")
        await ws.send_text("{}")
        await receive_until(ws, "error", code="invalid_message")
        await ws.send_text("[]")
        await receive_until(ws, "error", code="invalid_message")
        metrics = await scrape(app)
    assert metrics("voice_errors_total", code="invalid_json") == 1
    assert metrics("voice_errors_total", code="odd_byte_count") == 1
    assert metrics("voice_errors_total", code="invalid_message") == 2


async def test_a_model_failure_ends_the_session_with_its_reason(app: Starlette) -> None:
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "fail"}))
        await expect_close(ws)
    await wait_closed(app)
    metrics = await scrape(app)
    assert metrics("voice_sessions_ended_total", reason="model_error") == 1
    assert metrics("voice_errors_total", code="model_error") == 1  # the fatal error sent before the close


async def test_a_refused_handshake_is_counted_by_reason_on_a_real_server(
    app_factory: Callable[..., Starlette],
    settings_factory: Callable[..., Settings],
    scripted: ScriptedProvider,
) -> None:
    settings = settings_factory(max_sessions=1)
    app = app_factory(scripted, settings=settings)
    async with run_server(app, **server_options(settings)) as (_, port), httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        async with connect_ws(f"ws://127.0.0.1:{port}/ws", http) as ws:
            await start(ws)
            refused = await handshake(http, f"{base}/ws")
            metrics = await scrape(base)
    assert refused.status_code == 503
    assert metrics("voice_refusals_total", reason="capacity") == 1
    assert metrics("voice_sessions_active") == 1
    # Every reason is there from the start, at 0, so a rate over it needs no special case.
    assert ('voice_refusals_total{reason="origin"} 0.0') in metrics.text


async def test_the_event_loop_lag_probe_sees_a_blocked_loop(app: Starlette) -> None:
    async with run_server(app) as (_, port):
        base = f"http://127.0.0.1:{port}"
        await scrape(base)  # answered once the lifespan, and so the probe, has started
        # The server runs on this test's event loop: blocking it here is what a blocking
        # call in a session would do to every other session. The probe's wake-up, due
        # within 0.25 s, comes at least 0.25 s late.
        time.sleep(0.5)  # noqa: ASYNC251 - the point of the test
        metrics = await scrape_until(base, lambda m: m("voice_event_loop_lag_seconds_sum") >= 0.25)
    count = metrics("voice_event_loop_lag_seconds_count")
    assert count - metrics("voice_event_loop_lag_seconds_bucket", le="0.1") >= 1


async def test_metrics_port_serves_them_apart_and_the_main_port_has_none(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    metrics_port = free_port()
    app = app_factory(scripted, metrics_port=metrics_port)
    apart = f"http://127.0.0.1:{metrics_port}"
    async with run_server(app) as (_, port), httpx.AsyncClient() as http:
        async with connect_ws(f"ws://127.0.0.1:{port}/ws", http) as ws:
            await start(ws)
            metrics = await scrape(apart)
        on_main = await http.get(f"http://127.0.0.1:{port}/metrics")
        elsewhere = await http.get(f"{apart}/")
    assert metrics("voice_sessions_started_total") == 1
    assert metrics("voice_sessions_active") == 1
    assert on_main.status_code == 404
    assert elsewhere.status_code == 404
    # It stopped with the app.
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{apart}/metrics")


async def test_processes_sharing_a_multiproc_dir_are_scraped_as_one(tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {
        "MODEL_PROVIDER": "echo",
        "LOG_LEVEL": "INFO",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        # Both processes listen on it (SO_REUSEPORT); either answer is the whole.
        "METRICS_PORT": str(metrics_port),
    }
    ports = free_port(), free_port()
    apart = f"http://127.0.0.1:{metrics_port}"
    with (
        serve_subprocess({**env, "PORT": str(ports[0])}) as first,
        serve_subprocess({**env, "PORT": str(ports[1])}) as second,
    ):
        await wait_ready(first)
        await wait_ready(second)
        async with httpx.AsyncClient() as http, connect_ws(f"ws://127.0.0.1:{ports[0]}/ws", http) as one:
            await start(one)
            await one.send_bytes(tone(1600))  # 100 ms, said back
            await receive_until(one, "audio")
            async with connect_ws(f"ws://127.0.0.1:{ports[1]}/ws", http) as other:
                await start(other)
                # Each process's share arrives with its next flush (within a second).
                both = await scrape_until(
                    apart,
                    lambda m: (m("voice_sessions_active"), m("voice_frames_total", direction="in")) == (2, 1),
                )
                second.kill()  # no goodbye: its share of the active sessions must still go
                second.wait()
            left = await scrape_until(apart, lambda m: m("voice_sessions_active") == 1)
    assert both("voice_sessions_started_total") == 2
    assert left("voice_sessions_started_total") == 2  # what the dead process counted stays
    assert left("voice_audio_seconds_total", direction="in") == pytest.approx(0.1)
