"""One WebSocket conversation: the socket, a `BidiAgent`, and the tasks between them.

    socket reader ──> audio feed (queue + pump) ──┐
                  └─> text feed  (queue + pump) ──┴─> agent.send ─> model
    socket <── output relay <── OutputEncoder <── agent.receive <── model, tools

The reader is app/reader.py, the feeds app/feed.py, the relay app/relay.py; the session
builds them, runs them in one task group, and decides how it ends (app/outcome.py). The
first outcome wins; the other tasks are cancelled, the agent (and so the model and any
running tool) is stopped under a deadline, and the socket is closed with the outcome's
code.

Queue policy (app/feed.py): both input queues are bounded (AUDIO_QUEUE_SIZE,
TEXT_QUEUE_SIZE). When one is full the reader waits, so a model that cannot keep up
slows the reading of the socket (TCP backpressure) instead of buffering without limit or
dropping input. A model that takes nothing for INPUT_STALL_TIMEOUT seconds ends the
session (`input_stalled`, close 1013) rather than holding a connection whose client may
be long gone. A frame that finds its feed idle skips the queue: its send starts at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from starlette import status
from starlette.websockets import WebSocket
from strands.bidi import BidiAgent
from strands.bidi.models import BidiModel
from strands.bidi.types import AudioDelta
from strands.types.tools import AgentTool

from app.agent import build_agent, model_rates
from app.audio import Resampler
from app.config import Settings
from app.drain import Drain, Turn
from app.edge.agentcore import unique_session_id
from app.edge.gate import Admitted
from app.edge.ratelimit import InputLimits
from app.edge.refusals import Refusals
from app.edge.timeouts import Watchdog
from app.errors import ModelError, ProtocolError, SessionError
from app.feed import Feed
from app.logs import session_id_var
from app.metrics import Metrics
from app.models import ModelProvider
from app.outcome import SHUTDOWN, Outcome, describe
from app.plugins import SERVICES_KEY, ToolServices
from app.reader import Reader
from app.registry import SessionRegistry
from app.relay import relay
from app.tracing import start_session_trace
from app.wire import outbound as out
from app.wire.connection import SLOW_CLIENT, ClientConnection, ClientGone
from app.wire.encoder import OutputEncoder
from app.wire.inbound import ConnectOptions, Parser, parse_connect_options

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of one app shares."""

    settings: Settings
    provider: ModelProvider
    tools: Sequence[AgentTool]
    services: ToolServices
    registry: SessionRegistry
    refusals: Refusals
    metrics: Metrics
    drain: Drain


class Session:
    def __init__(
        self, websocket: WebSocket, context: SessionContext, admitted: Admitted | None = None
    ) -> None:
        self.admitted = admitted or Admitted()
        given = self.admitted.session_id  # AgentCore's; registered in serve() with no await between
        self.id = unique_session_id(given, context.registry) if given else uuid.uuid4().hex
        self.client = ClientConnection(websocket, context.metrics)
        self.context = context
        self.outcome: Outcome | None = None
        limits = context.settings
        self._watchdog = Watchdog(limits.idle_timeout, limits.max_session_duration)
        self._tasks: list[asyncio.Task[None]] = []  # while they run: see _run
        self._turn = Turn()
        self._draining = False

    # lifecycle -------------------------------------------------------------

    async def serve(self) -> None:
        registry, metrics = self.context.registry, self.context.metrics
        registry.add(self.id)
        metrics.session_started()
        self.context.drain.join(self)
        token = session_id_var.set(self.id)  # inherited by every task the session starts
        trace = start_session_trace(self.id)  # a no-op unless tracing is configured
        started = time.monotonic()
        try:
            await self.client.accept(self.admitted.subprotocol)
            await self._serve()
        finally:
            self.admitted.release()  # on every path; normally already done by _close
            self.context.drain.leave(self)
            registry.discard(self.id)
            outcome = self.outcome
            reason, code = (outcome.reason, outcome.close_code) if outcome else ("unknown", None)
            duration = time.monotonic() - started
            metrics.session_ended(outcome.reason if outcome else None, duration)
            logger.info(
                "session closed: reason=%s code=%s after %.1fs",
                reason,
                "-" if code is None else code,
                duration,
                extra={"reason": reason, "code": code, "duration_s": round(duration, 3)},
            )
            trace.end(reason, code)
            session_id_var.reset(token)

    async def _serve(self) -> None:
        settings = self.context.settings
        try:
            model = self.context.provider.build()
        except Exception as exc:
            logger.exception("model could not be built")
            await self._close(Outcome("model_error", status.WS_1011_INTERNAL_ERROR, ModelError(str(exc))))
            return
        input_rate, output_rate = model_rates(model, settings)
        try:
            options = parse_connect_options(dict(self.client.query_params), input_rate, output_rate)
        except ProtocolError as exc:
            await self._close(Outcome(exc.code, exc.close_code, exc))
            return
        agent = build_agent(model, self.context.tools, settings, self.context.metrics)
        try:
            await self._converse(agent, options, input_rate)
        except Exception:
            logger.exception("session failed")
            self.finish(
                Outcome("internal_error", status.WS_1011_INTERNAL_ERROR, SessionError("internal error"))
            )
        finally:
            # Also reached when the task is cancelled from outside (a server stopping past
            # its grace period): the client still gets a close and the model is stopped.
            self.outcome = self.outcome or SHUTDOWN
            with anyio.CancelScope(shield=True):
                # Each with its own deadline: a client that reads nothing must not use up
                # the time the model has to stop.
                with anyio.move_on_after(settings.stop_timeout):
                    await self._close(self.outcome)
                await self._stop_agent(agent)

    async def _converse(self, agent: BidiAgent, options: ConnectOptions, model_input_rate: int) -> None:
        model = agent.model
        try:
            await self.client.send_message(self._session_start(model, options, agent.tool_names))
        except ClientGone as gone:
            self.client_gone(gone)
            return
        logger.info(
            "session started: provider=%s model=%s rates in=%d out=%d audio=%s principal=%s",
            self.context.provider.name,
            model.model_id,
            options.input_sample_rate,
            options.output_sample_rate,
            options.audio,
            self.admitted.principal or "-",
            extra={
                "provider": self.context.provider.name,
                "model": model.model_id,
                "principal": self.admitted.principal,
                "audio": options.audio,
            },
        )
        try:
            await agent.start(invocation_state={SERVICES_KEY: self.context.services, "session_id": self.id})
        except Exception as exc:
            logger.exception("model failed to start")
            self.finish(Outcome("model_error", status.WS_1011_INTERNAL_ERROR, ModelError(str(exc))))
            return
        await self._run(agent, options, model_input_rate)

    async def _run(self, agent: BidiAgent, options: ConnectOptions, model_input_rate: int) -> None:
        settings = self.context.settings
        parser = Parser(options.input_sample_rate, settings.max_message_bytes, settings.max_text_chars)
        limits = InputLimits.for_session(settings, options.input_sample_rate)
        metrics = self.context.metrics
        turns = metrics.turn_clock()
        encoder = OutputEncoder(options.output_sample_rate, options.audio, metrics.traffic, turns)
        resampler = Resampler(options.input_sample_rate, model_input_rate)
        stall = settings.input_stall_timeout

        resample = None if resampler.passthrough else resampler  # equal rates: no call a frame

        async def send_audio(pcm: bytes) -> None:  # the hot path: no extra await layer
            if resample is not None and not (pcm := resample(pcm)):
                return
            try:
                await agent.send(AudioDelta(format="pcm", source={"bytes": pcm}))
            except Exception as exc:
                self.model_failed(exc)

        async def send_text(text: str) -> None:
            turns.user_turn_ended()  # its answer is due from now (before: a model may answer within send)
            try:
                await agent.send(text)
            except Exception as exc:
                self.model_failed(exc)

        audio = Feed("session:audio-send", settings.audio_queue_size, stall, send_audio)
        text = Feed("session:text-send", settings.text_queue_size, stall, send_text)
        reader = Reader(
            client=self.client,
            parser=parser,
            limits=limits,
            audio=audio,
            text=text,
            watchdog=self._watchdog,
            turn=self._turn,
            traffic=metrics.traffic,
            refusals=self.context.refusals,
            drain_timeout=settings.stop_timeout,
            ending=self,
        )
        # asyncio's task group, ended by cancelling its tasks, not anyio's ended by its
        # cancel scope: the same structure (the first to finish ends the rest, and the
        # group waits for them), but no exception is kept for a task cancelled at the end.
        # anyio 4.16 keeps one in a reference cycle for every such task (its `task_done`),
        # as does asyncio's group when the cancellation goes through it (Python 3.13.0's
        # `TaskGroup.__aexit__`): each held an ended session's objects, about 200 of them,
        # until the next full collection. It also spares every wake-up of a task one
        # coroutine frame (anyio's `TaskHandle._run_coro`).
        try:
            async with asyncio.TaskGroup() as group:
                self._tasks = [
                    group.create_task(reader.run(), name="session:reader"),
                    group.create_task(audio.pump(), name="session:audio-pump"),
                    group.create_task(text.pump(), name="session:text-pump"),
                    group.create_task(
                        relay(agent, encoder, self.client, self._turn, self), name="session:relay"
                    ),
                ]
                if self._watchdog.enabled:
                    self._tasks.append(group.create_task(self._watch(), name="session:watchdog"))
                if self.outcome is not None:  # decided before there were tasks to end (a drain)
                    self._end_tasks()
        finally:
            self._tasks = []  # the cancelled tasks hold their tracebacks, which hold this session

    def client_gone(self, gone: ClientGone) -> None:
        if gone.reason == SLOW_CLIENT and self.outcome is None:  # cut by app/edge/transport.py
            timeout = self.context.settings.slow_client_timeout
            self.context.refusals.record("slow_client", f"left its outbound buffer full for {timeout:g} s")
        self.finish(Outcome.gone(gone))

    # the drain (app/drain.py) calls these ----------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    def wind_down(self) -> None:
        self._draining = True
        if not self._turn.busy:
            self.finish(SHUTDOWN)

    def close_now(self) -> None:
        self.finish(SHUTDOWN)

    def finish(self, outcome: Outcome) -> None:
        """The first outcome wins; it ends every task of the session."""
        if self.outcome is None:
            self.outcome = outcome
        self._end_tasks()

    def _end_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _close(self, outcome: Outcome) -> None:
        # Capacity first: a client that reconnects on seeing the close must find room,
        # even while this session's model is still stopping.
        self.admitted.release()
        self.outcome = self.outcome or outcome
        if outcome.client_gone:
            return
        client = self.client
        try:
            if outcome.error is not None:
                await client.send_message(outcome.error.to_wire())
            await client.send_message(out.ConnectionClose(type="connection_close", reason=outcome.reason))
            await client.close(outcome.close_code)
        except ClientGone:
            pass  # nothing left to tell a client that has already gone

    async def _stop_agent(self, agent: BidiAgent) -> None:
        with anyio.move_on_after(self.context.settings.stop_timeout) as scope:
            try:
                await agent.stop()
            except RuntimeError as exc:  # strands collects stop failures into one RuntimeError
                logger.warning("agent stop reported errors: %s", exc)
        if scope.cancelled_caught:
            logger.warning("agent did not stop within %.1fs", self.context.settings.stop_timeout)

    # the tasks (the reader and the relay are app/reader.py and app/relay.py) ----------

    async def _watch(self) -> None:
        expiry = await self._watchdog.expired()
        settings = self.context.settings
        if expiry == "idle":
            detail = f"no frame from the client for {settings.idle_timeout:g} s"
        else:
            detail = f"open for {settings.max_session_duration:g} s"
        self.context.refusals.record(expiry, detail)
        self.finish(Outcome(expiry))

    def model_failed(self, exc: BaseException) -> None:
        # Logged once here; finishing then ends every task.
        if self.outcome is not None:  # already ending; a follow-on failure is noise
            logger.debug("model error while closing: %s", describe(exc))
            return
        logger.error("model failed: %s", exc if isinstance(exc, SessionError) else describe(exc))
        self.finish(Outcome.model_failure(exc))

    def _session_start(
        self, model: BidiModel, options: ConnectOptions, tool_names: list[str]
    ) -> out.SessionStart:
        return out.SessionStart(
            type="session_start",
            session_id=self.id,
            protocol=out.PROTOCOL_VERSION,
            provider=self.context.provider.name,
            model=model.model_id,
            input_sample_rate=options.input_sample_rate,
            output_sample_rate=options.output_sample_rate,
            audio_format=out.AUDIO_FORMAT,
            audio_encoding=options.audio.value,
            channels=1,
            tools=sorted(tool_names),
        )
