"""Every metric the service exports (the README's Metrics section lists them), and what
moves them.

The per-frame path never calls prometheus-client: `Counter.inc` takes a lock, and in
multiprocess mode writes to a memory-mapped file. Frames, bytes and audio seconds are
plain attribute additions on one `Traffic` object per app, and `Metrics.flush` adds what
has accumulated since the last flush to the counters: at every scrape, and (in
multiprocess mode, where other processes answer scrapes too) once a second. Everything
else (a session starting or ending, a tool call, an error message, a model restart, a
turn) happens a few times a session and moves its metric at once.

Labels are bounded, and never a session id: close reasons are mapped onto
`CLOSE_REASONS` (anything else counts as "other"), tools are the loaded plugins, error
codes are `outbound.ErrorCode`, refusal reasons `RefusalReason`, restart reasons strands'
two ("timeout", "scheduled").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from strands.bidi.hooks import BidiAfterConnectionRestartEvent

from app.edge.refusals import RefusalReason
from app.timed_tool import ToolStatus
from app.wire.outbound import ERROR_CODES

# Why a session ended (`Outcome.reason`): its own ends, a close it did not make
# (app/wire/connection.py), a limit (app/edge/refusals.py), or a fatal error's code.
CLOSE_REASONS: Final = frozenset(
    {
        "client_end",  # the client sent `end`
        "client_disconnect",  # the client closed, or its connection dropped
        "model_stop",  # the model ended the conversation
        "server_shutdown",
        "keepalive_timeout",
        "slow_client",
        "invalid_utf8",
        "idle",
        "max_duration",
    }
    | ERROR_CODES  # model_error, internal_error, input_stalled, rate_limited, message_too_large, ...
)
OTHER: Final = "other"
REFUSAL_REASONS: Final[tuple[str, ...]] = get_args(RefusalReason)

# Histogram buckets, seconds, each spanning what its quantity ranges over in practice.
SESSION_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
TOOL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TURN_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def close_reason(reason: str | None) -> str:
    """The `reason` label for a session's `Outcome.reason` (None: it ended without one)."""
    if reason is not None and reason in CLOSE_REASONS:
        return reason
    return OTHER


class Traffic:
    """What every frame adds to: plain numbers, read (never reset) by `Metrics.flush`.

    Only the event loop writes them. A scrape on METRICS_PORT flushes from its own thread,
    which only reads: an attribute read is atomic, so a frame counted meanwhile goes into
    the next flush rather than being lost."""

    __slots__ = ("audio_in", "audio_out", "bytes_out", "frames_in", "frames_out")

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.audio_in = 0.0  # seconds of client audio
        self.audio_out = 0.0  # seconds of audio sent to clients


class TurnClock:
    """One session's time from the end of the user's turn to the first assistant audio.

    The user's turn ends at whichever comes last of: the user's final transcript (the
    model's, for speech) and a text message handed to the model. The first audio frame
    encoded for the client after it stops the clock; audio with no turn before it (a
    greeting, the rest of a reply) is not timed."""

    __slots__ = ("_observe", "waiting_since")

    def __init__(self, histogram: Histogram) -> None:
        self._observe = histogram.observe
        self.waiting_since = 0.0  # 0.0: no turn waits for its answer

    def user_turn_ended(self) -> None:
        self.waiting_since = time.monotonic()

    def answered(self) -> None:
        """Called with the first assistant audio, when `waiting_since` is set."""
        self._observe(time.monotonic() - self.waiting_since)
        self.waiting_since = 0.0


class Metrics:
    """One app's metrics, in a registry of its own (tests build many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.traffic = Traffic()
        r = self.registry
        # "livesum": in multiprocess mode the sum over live processes (a dead one's value goes).
        self.sessions_active = Gauge(
            "voice_sessions_active", "Open sessions.", registry=r, multiprocess_mode="livesum"
        )
        self.sessions_started = Counter("voice_sessions_started", "Sessions accepted.", registry=r)
        self.sessions_ended = Counter(
            "voice_sessions_ended", "Sessions ended, by close reason.", ["reason"], registry=r
        )
        self.session_duration = Histogram(
            "voice_session_duration_seconds", "How long sessions lasted.", buckets=SESSION_BUCKETS, registry=r
        )
        self.refusals = Counter(
            "voice_refusals",
            "Handshakes refused and sessions cut by a limit, by reason.",
            ["reason"],
            registry=r,
        )
        self.frames = Counter(
            "voice_frames", "WebSocket data frames, by direction (in, out).", ["direction"], registry=r
        )
        self.audio = Counter(
            "voice_audio_seconds", "Seconds of audio, by direction (in, out).", ["direction"], registry=r
        )
        self.bytes_sent = Counter("voice_sent_bytes", "Payload bytes of the frames sent.", registry=r)
        self.tool_calls = Counter(
            "voice_tool_calls", "Tool calls, by tool and status.", ["tool", "status"], registry=r
        )
        self.tool_duration = Histogram(
            "voice_tool_call_duration_seconds",
            "Tool call time, by tool.",
            ["tool"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "voice_errors", "Error messages sent to clients, by code.", ["code"], registry=r
        )
        self.restarts = Counter(
            "voice_model_restarts",
            "Model connection restarts, by reason (timeout, scheduled) and result (ok, failed).",
            ["reason", "result"],
            registry=r,
        )
        self.turn_latency = Histogram(
            "voice_turn_latency_seconds",
            "From the end of the user's turn to the first assistant audio.",
            buckets=TURN_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "voice_event_loop_lag_seconds",
            "How late the event loop ran a timer: the relay's own health.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._flushed = Traffic()  # what has been added to the counters so far
        self._traffic_counters = (
            ("frames_in", self.frames.labels("in")),
            ("frames_out", self.frames.labels("out")),
            ("audio_in", self.audio.labels("in")),
            ("audio_out", self.audio.labels("out")),
            ("bytes_out", self.bytes_sent),
        )
        self._flushed_refusals = dict.fromkeys(REFUSAL_REASONS, 0)
        for reason in REFUSAL_REASONS:  # every reason shows, at 0 until it happens
            self.refusals.labels(reason)
        # A scrape thread (METRICS_PORT) and the loop's flusher may flush at once.
        self._flush_lock = threading.Lock()

    # what sessions, tools and the socket report ---------------------------------------

    def session_started(self) -> None:
        self.sessions_started.inc()

    def session_ended(self, reason: str | None, seconds: float) -> None:
        self.sessions_ended.labels(close_reason(reason)).inc()
        self.session_duration.observe(seconds)

    def tool_called(self, tool: str, status: ToolStatus, seconds: float) -> None:
        self.tool_calls.labels(tool, status).inc()
        self.tool_duration.labels(tool).observe(seconds)

    def error_sent(self, code: str) -> None:
        self.errors.labels(code).inc()

    def model_restarted(self, event: BidiAfterConnectionRestartEvent) -> None:
        """A strands after-restart hook."""
        self.restarts.labels(event.reason, "ok" if event.exception is None else "failed").inc()

    def turn_clock(self) -> TurnClock:
        return TurnClock(self.turn_latency)

    # folding the tallies in --------------------------------------------------------------

    def flush(self, sessions: int, refusals: Mapping[str, int]) -> None:
        """Add what the traffic and refusal counts gained since the last flush; set the
        active-session gauge to `sessions`."""
        with self._flush_lock:
            traffic, flushed = self.traffic, self._flushed
            for name, counter in self._traffic_counters:
                total = getattr(traffic, name)  # read once: the loop may add meanwhile
                if gained := total - getattr(flushed, name):
                    counter.inc(gained)
                    setattr(flushed, name, total)
            seen = self._flushed_refusals
            for reason in REFUSAL_REASONS:  # by key: the loop may add a reason meanwhile
                total = refusals.get(reason, 0)
                if gained := total - seen[reason]:
                    self.refusals.labels(reason).inc(gained)
                    seen[reason] = total
            self.sessions_active.set(sessions)
