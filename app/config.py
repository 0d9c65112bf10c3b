"""Settings: read once from the environment and `.env` into a frozen object.

Nothing else in the service reads the environment. Each field is declared with its
default, its parser and its documentation together (`setting(...)`); `.env.example` is
rendered from them (`make env-example`, app/settings_doc.py). An invalid value raises
`ConfigError` naming the variable and what it accepts, so a bad deployment fails at
startup rather than on the first call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from inspect import cleandoc
from pathlib import Path
from typing import Any, Final

from starlette.config import Config
from starlette.datastructures import Secret

from app import parsers
from app.errors import ConfigError
from app.extensions import BRAINS, PROVIDERS, Extension
from app.parsers import Parser

# Rates a model may run at (Nova Sonic accepts exactly these three).
MODEL_SAMPLE_RATES = (8000, 16000, 24000)
# Rates a client may use; the session resamples between these and the model's.
CLIENT_SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
# MAX_MESSAGE_BYTES bounds: at least a 100 ms audio frame at the highest client rate as
# base64 JSON (48 kHz: 9600 bytes, 12800 in base64); at most uvicorn's own default, as
# every connection may buffer one frame of this size.
MIN_MESSAGE_BYTES = 16 * 1024
MAX_MESSAGE_BYTES_LIMIT = 16 * 1024 * 1024
# A text message is sent as JSON: up to 4 UTF-8 bytes a character, plus the object around it.
TEXT_ENVELOPE_BYTES = 64

# The doc of a setting described by the comment of the one before it (INPUT_/OUTPUT_SAMPLE_RATE).
SEE_ABOVE: Final = ""


@dataclass(frozen=True, slots=True)
class Setting:
    """How a `Settings` field is read from the environment and shown in `.env.example`."""

    parse: Parser
    doc: str  # the comment lines above KEY=default
    section: str = ""  # set on the first field of a section: its heading
    # An extension point whose names and descriptions follow the doc.
    choices: Mapping[str, Extension[Any]] | None = None


def setting(
    default: Any,
    parse: Parser,
    doc: str,
    *,
    section: str = "",
    choices: Mapping[str, Extension[Any]] | None = None,
) -> Any:
    """A `Settings` field; `doc` is written like a docstring (its indentation is stripped)."""
    return field(default=default, metadata={"setting": Setting(parse, cleandoc(doc), section, choices)})


def setting_of(f: Field[Any]) -> Setting:
    spec = f.metadata.get("setting")
    if not isinstance(spec, Setting):
        raise TypeError(f"Settings.{f.name} is not declared with setting(default, parser, doc)")
    return spec


def _extension(default: str, extensions: Mapping[str, Extension[Any]], *, section: str = "") -> Any:
    """A setting naming one entry of an extension point; its doc lists every entry."""
    return setting(default, parsers.choice(extensions, str.lower), "", section=section, choices=extensions)


@dataclass(frozen=True, slots=True)
class Settings:
    # Fields are in .env.example's order; `section` starts its next heading.
    model_provider: str = _extension("local", PROVIDERS, section="Model")
    model_id: str = setting(
        "",
        parsers.stripped,
        """
        Empty: the provider's default (nova_sonic: amazon.nova-2-5-sonic, local: local-<brain>, echo: echo).
        """,
    )
    aws_region: str = setting(
        "us-east-1",
        parsers.non_empty,
        "AWS region for Bedrock (nova_sonic). Credentials come from the default boto3 chain.",
    )
    bedrock_endpoint_url: str = setting(
        "",
        parsers.https_url,
        """
        Bedrock Runtime endpoint for nova_sonic; empty: https://bedrock-runtime.<AWS_REGION>.amazonaws.com.
        Set it for a VPC interface endpoint (PrivateLink) or a FIPS endpoint, e.g.
        https://bedrock-runtime-fips.us-east-1.amazonaws.com. https only (Nova streams over HTTP/2 + TLS);
        requests are still signed for AWS_REGION.
        """,
    )
    voice: str = setting(
        "matthew",
        parsers.non_empty,
        """
        Output voice: a Nova Sonic voice id (matthew, tiffany, amy, ...). The local model maps
        these to espeak-ng voices (see docs/local-model.md) or takes an espeak voice name.
        """,
    )
    input_sample_rate: int = setting(
        16000,
        parsers.choice(MODEL_SAMPLE_RATES, int),
        """
        The model's audio rates: 8000 | 16000 | 24000. Clients may use other rates per
        connection (?input_sample_rate=...&output_sample_rate=...); the server resamples.
        """,
    )
    output_sample_rate: int = setting(24000, parsers.choice(MODEL_SAMPLE_RATES, int), SEE_ABOVE)
    system_prompt: str = setting(
        "You are a friendly voice assistant. Keep answers short and conversational; "
        "use the tools you have when they help.",
        parsers.non_empty,
        "The agent's system prompt.",
    )

    local_brain: str = _extension("rules", BRAINS, section="The local model (MODEL_PROVIDER=local)")
    local_text_model: str = setting(
        "",
        parsers.stripped,
        "bedrock:<model id>  or  openai:<model>@<base url> (llama.cpp, Ollama, vLLM, ...)",
    )
    local_text_model_api_key: Secret = setting(  # noqa: RUF009 - the default is immutable
        Secret(""), parsers.secret, "API key for an openai: text model (many local servers need none)."
    )
    end_of_speech_ms: int = setting(
        500,
        parsers.number(int, 100, 5000),
        "Silence, in ms, that ends an utterance (so does twice that long with no audio at all).",
    )
    max_utterance_seconds: float = setting(
        15.0,
        parsers.number(float, 1.0, 300.0),
        """
        Longest utterance, in seconds of speech or of time: it is then recognised and
        answered, and speech going on starts the next. Bounds how long one session holds
        a speech decoder, so noise cannot lock the others out.
        """,
    )
    local_speech_rate: int = setting(
        165, parsers.number(int, 80, 450), "Speaking rate of the local voice, words per minute."
    )
    local_asr_decoders: int = setting(
        2,
        parsers.number(int, 1, 64),
        "Speech decoders per process (each ~60-90 MB): people recognised at once; more take turns.",
    )
    local_audio_lead_ms: int = setting(
        1000,
        parsers.number(int, 100, 10000),
        "How far, in ms, the local model's audio may run ahead of the client's playback.",
    )

    tools_dir: Path = setting(  # noqa: RUF009 - the default is immutable
        Path("tools"),
        parsers.path,
        "Folder of tool plugins: every *.py in it is imported at startup.",
        section="Tools",
    )
    weather_api_key: Secret = setting(  # noqa: RUF009 - the default is immutable
        Secret(""),
        parsers.secret,
        "OpenWeatherMap key for the weather tool; empty uses Open-Meteo (no key needed).",
    )
    tool_http_timeout: float = setting(
        5.0, parsers.number(float, 0.1, 120.0), "Timeout, in seconds, for HTTP calls made by tools."
    )
    tool_timeout: float = setting(
        10.0,
        parsers.number(float, 0.1, 300.0),
        """
        Seconds a tool call may take (0.1-300); after that the model gets an error result
        saying the tool timed out, and the session goes on.
        """,
    )
    tool_processes: int = setting(
        2,
        parsers.number(int, 1, 64),
        """
        Worker processes for CPU-bound tool work such as the calculator (1-64). A call that
        times out has its process killed; calls beyond this many wait for a free one.
        """,
    )

    log_level: str = setting(
        "INFO",
        parsers.choice(LOG_LEVELS, str.upper),
        """
        DEBUG | INFO | WARNING | ERROR | CRITICAL, for the service's own loggers. Libraries that
        log frames, payloads or headers (websockets, httpx, httpcore, botocore, strands, openai,
        ...) stay at WARNING and uvicorn's at INFO whatever this is; query values in logged URLs
        are redacted except input_sample_rate, output_sample_rate and audio.
        """,
        section="Server",
    )
    log_format: str = setting(
        "text",
        parsers.choice(LOG_FORMATS, str.lower),
        """
        text | json. json: one JSON object a line (time, level, logger, session_id, message and
        fields such as reason, code, principal, duration_s; a traceback as exc), uvicorn's lines
        too. Tracing is set by the standard OTEL_* variables, not here (README, Observability).
        """,
    )
    debug_loggers: tuple[str, ...] = setting(
        (),
        parsers.logger_names,
        """
        Comma-separated loggers to run at DEBUG anyway, e.g. websockets,httpcore (uvicorn.error
        carries websockets' frame lines). They MAY LOG AUDIO, USER TEXT AND SECRETS (headers).
        """,
    )
    host: str = setting("127.0.0.1", parsers.non_empty, "Where `python -m app` (and `make run`) listens.")
    port: int = setting(8080, parsers.number(int, 0, 65535), SEE_ABOVE)
    metrics_port: int = setting(
        0,
        parsers.number(int, 0, 65535),
        """
        Prometheus metrics, GET /metrics (the README's Metrics section lists them). 0: on PORT,
        as public as /ws. Another port: on HOST:METRICS_PORT only, and PORT has no /metrics.
        """,
    )
    prometheus_multiproc_dir: str = setting(
        "",
        parsers.stripped,
        """
        prometheus-client's multiprocess mode, for several worker processes: a directory, empty
        when the server starts, where every process writes its metrics so that one scrape sums
        them all. Set it in the process environment: prometheus-client reads it there, not in .env.
        """,
    )
    workers: int = setting(
        1,
        parsers.number(int, 1, 256),
        """
        Processes `python -m app` serves with (uvicorn's workers, sharing the port), e.g. one
        per core; `--workers N` overrides it. Limits and /health are per process, metrics too
        unless PROMETHEUS_MULTIPROC_DIR is set (README, "Running more than one process").
        WEB_CONCURRENCY is not read.
        """,
    )
    ws_ping_interval: float = setting(
        20.0,
        parsers.number(float, 0.1, 3600.0),
        """
        WebSocket keepalive, seconds: the server pings every WS_PING_INTERVAL; a client that
        does not answer within WS_PING_TIMEOUT is closed (1011, keepalive_timeout in the log).
        """,
    )
    ws_ping_timeout: float = setting(20.0, parsers.number(float, 0.1, 3600.0), SEE_ABOVE)
    drain_timeout: float = setting(
        30.0,
        parsers.number(float, 0.0, 3600.0),
        """
        On SIGTERM/SIGINT: seconds open sessions may take to finish the response in progress
        before they are closed (1012, server_shutdown). New sessions are refused at once;
        /ready turns 503. Give the platform's grace period (terminationGracePeriodSeconds,
        ECS stopTimeout) this plus about 10 s.
        """,
    )

    # Queue sizes are in frames/messages; see Session for the overflow policy.
    audio_queue_size: int = setting(
        64,
        parsers.number(int, 1, 100_000),
        """
        Input queues per session, in frames/messages. When full, the server stops reading
        the socket until the model catches up (backpressure; nothing is dropped).
        """,
        section="Limits",
    )
    text_queue_size: int = setting(16, parsers.number(int, 1, 10_000), SEE_ABOVE)
    max_message_bytes: int = setting(
        1_048_576,
        parsers.number(int, MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES_LIMIT),
        """
        Largest client frame in bytes (text frames: UTF-8 bytes). `python -m app` hands it to
        uvicorn, which refuses a larger frame from its header and closes with 1009. From 16384
        (a 100 ms frame of 48 kHz audio as base64 JSON) to 16777216; must hold MAX_TEXT_CHARS
        as JSON text: at least 4 * MAX_TEXT_CHARS + 64.
        """,
    )
    max_text_chars: int = setting(
        8_000,
        parsers.number(int, 1, 1_000_000),
        "Longest text message in characters; longer ones get a text_too_long error.",
    )
    input_stall_timeout: float = setting(
        10.0,
        parsers.number(float, 0.1, 3600.0),
        """
        Seconds the server waits, with an input queue full, for the model to take input
        before closing the session with input_stalled (1013).
        """,
    )
    max_history_messages: int = setting(
        200,
        parsers.number(int, 2, 100_000),
        "Most messages a session's conversation history keeps (oldest turns are dropped).",
    )
    model_max_restarts: int = setting(
        3,
        parsers.number(int, 0, 1000),
        """
        A model connection that keeps failing (Nova Sonic timing out again and again): strands
        restarts it and replays the history, at most MODEL_MAX_RESTARTS times within any
        MODEL_RESTART_WINDOW seconds; the next failure ends the session (model_restart_limit, 1013).
        """,
    )
    model_restart_window: float = setting(60.0, parsers.number(float, 1.0, 86_400.0), SEE_ABOVE)
    stop_timeout: float = setting(
        2.0,
        parsers.number(float, 0.1, 60.0),
        'Seconds allowed for stopping a session\'s agent and model (and for draining on "end").',
    )

    allowed_origins: tuple[str, ...] = setting(
        (),
        parsers.web_origins,
        """
        Comma-separated origins whose pages may open a WebSocket (https://app.example.com), or *
        for any. Empty: pages from the request's own host only (Origin host:port = Host header; a
        proxy must pass Host on). A client that sends no Origin (not a browser) is not refused by it.
        """,
        section="Edge",
    )
    auth_tokens: Secret = setting(  # noqa: RUF009 - the default is immutable
        Secret(""),
        parsers.api_keys,
        """
        Comma-separated static API keys (16+ characters of A-Za-z0-9._~-). With AUTH_TOKENS or
        AUTH_JWKS_URL set, a handshake needs a token (Authorization: Bearer, the bearer subprotocol,
        or ?token=) that is one of these keys or a valid JWT; otherwise 401, before any model is built.
        Both empty: no authentication.
        """,
    )
    auth_jwks_url: str = setting(
        "",
        parsers.jwks_url,
        """
        JWKS URL of the identity provider whose JWTs are accepted (https; http only to localhost),
        e.g. https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json.
        """,
    )
    auth_audience: tuple[str, ...] = setting(
        (),
        parsers.comma_list,
        "Comma-separated; a JWT's aud must be one of them (403 otherwise). Empty: aud not checked.",
    )
    auth_issuer: str = setting(
        "", parsers.stripped, "A JWT's iss must be exactly this (403 otherwise). Empty: iss not checked."
    )
    auth_algorithms: tuple[str, ...] = setting(
        ("RS256",),
        parsers.jwt_algorithms,
        "JWT signature algorithms accepted: RS*, PS*, ES*, EdDSA (none and HS* are refused).",
    )
    auth_leeway: float = setting(
        30.0,
        parsers.number(float, 0.0, 600.0),
        "Clock skew, in seconds, allowed on a JWT's exp, nbf and iat.",
    )
    auth_jwks_timeout: float = setting(
        5.0, parsers.number(float, 0.1, 60.0), "Seconds a fetch of the JWKS may take, all of it."
    )
    auth_jwks_max_age: float = setting(
        3600.0,
        parsers.number(float, 1.0, 86_400.0),
        """
        JWKS caching: the keys are fetched again after AUTH_JWKS_MAX_AGE seconds, or when a token
        names a key id not held (rotation), but never twice within AUTH_JWKS_REFETCH_INTERVAL
        seconds, so tokens with made-up key ids cannot flood the provider. If a fetch fails the
        keys held stay in use; with none, handshakes get 503.
        """,
    )
    auth_jwks_refetch_interval: float = setting(10.0, parsers.number(float, 0.0, 3600.0), SEE_ABOVE)
    forwarded_allow_ips: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"),
        parsers.ip_networks,
        """
        Proxies (addresses or networks, or *) whose X-Forwarded-For/-Proto uvicorn trusts for the
        client address in logs; set it to the load balancer's subnets. Passed to uvicorn.
        """,
    )

    # Admission, input rates and timeouts (app/edge/). 0 turns each off.
    max_sessions: int = setting(
        200,
        parsers.number(int, 0, 1_000_000),
        """
        Sessions one process serves at once (0: no limit); the next handshake is refused with
        HTTP 503 and Retry-After. One process runs on one core: the echo relay carries about
        250 full-duplex sessions per core before every session's latency grows to seconds, so
        200 keeps a margin. Lower it for heavier models (Nova Sonic's relay costs more per
        frame; the local model recognises LOCAL_ASR_DECODERS speakers at once), and to a few
        (e.g. 2, room for a reconnect) on AgentCore Runtime, where each runtime session has
        its own microVM.
        """,
    )
    audio_rate_limit: float = setting(
        2.0,
        parsers.number(float, 0.0, 1000.0),
        """
        Audio a client may send, as a multiple of real time, sustained (0: no limit), beyond a
        burst of AUDIO_BURST_SECONDS of audio. Faster audio is read no faster than the limit
        and gets one rate_limited error (not fatal); see RATE_LIMIT_GRACE.
        """,
    )
    audio_burst_seconds: float = setting(2.0, parsers.number(float, 0.0, 3600.0), SEE_ABOVE)
    text_rate_limit: float = setting(
        10.0,
        parsers.number(float, 0.0, 100_000.0),
        """
        Other frames a client may send per second (text, ping, end, and bad frames), sustained
        (0: no limit), beyond a burst of TEXT_BURST; over it, as for audio.
        """,
    )
    text_burst: int = setting(40, parsers.number(int, 1, 1_000_000), SEE_ABOVE)
    rate_limit_grace: float = setting(
        5.0,
        parsers.number(float, 0.0, 3600.0),
        """
        Seconds a client may stay over a rate limit before the session is closed (rate_limited,
        1008); 0 closes at the first frame over it.
        """,
    )
    idle_timeout: float = setting(
        0.0,
        parsers.number(float, 0.0, 86_400.0),
        """
        Seconds without any frame from the client (a {"type":"ping"} counts) before the session
        is closed (idle, 1000); 0: never. Off by default: the voice page sends nothing while
        muted. Behind AgentCore or a load balancer, see docs/protocol.md ("Timeouts").
        """,
    )
    max_session_duration: float = setting(
        0.0,
        parsers.number(float, 0.0, 30 * 86_400.0),
        """
        Seconds a session may last (max_duration, 1000); 0: no limit. On AgentCore Runtime set
        it below the runtime's maxLifetime (default 28800, 8 h) for a clean close.
        """,
    )

    # HANDSHAKE_TIMEOUT to CLOSE_TIMEOUT act in uvicorn's protocols (app/edge/handshake.py,
    # app/edge/transport.py), so they apply where app/serving.py's options are used.
    handshake_timeout: float = setting(
        10.0,
        parsers.number(float, 0.1, 3600.0),
        """
        Seconds a new connection has to send its complete request headers (the WebSocket
        handshake); a silent or slow one is closed (HTTP 408, refusal handshake_timeout).
        """,
    )
    max_connections: int = setting(
        0,
        parsers.number(int, 0, 1_000_000),
        """
        Open connections per process, HTTP and WebSocket together; one more is answered
        HTTP 503 and closed at once (refusal connection_limit). 0: unlimited.
        """,
    )
    slow_client_timeout: float = setting(
        5.0,
        parsers.number(float, 0.1, 3600.0),
        """
        A client whose outbound buffer stays over MAX_OUTBOUND_BUFFER_BYTES for this many
        seconds (it reads nothing, or far too slowly) is closed: 1008, reason slow_client.
        While over, the server sends it nothing more and reads nothing from it, pings included.
        The buffer is in the process; the socket's send buffer in the kernel is set to the same size.
        """,
    )
    max_outbound_buffer_bytes: int = setting(262_144, parsers.number(int, 16_384, 67_108_864), SEE_ABOVE)
    close_timeout: float = setting(
        5.0,
        parsers.number(float, 0.1, 300.0),
        """
        Seconds a closing connection has to finish (the client to read what is queued and
        answer the close); then it is cut, which frees its socket, file descriptor and buffers.
        """,
    )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# Each field's parser, from its declaration; building this checks that every field has one.
_PARSERS: dict[str, Parser] = {f.name: setting_of(f).parse for f in fields(Settings)}


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build `Settings` from `environ` (default: the process environment) and `env_file`.

    The environment wins over the file, as in starlette's `Config`.
    """
    env_path = Path(env_file) if env_file is not None else None
    source = os.environ if environ is None else dict(environ)
    config = Config(env_path if env_path is not None and env_path.is_file() else None, environ=source)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = f.name.upper()
        raw = config(key, default=None)
        if raw is None:
            continue
        parser = _PARSERS.get(f.name)
        if parser is None:  # a field added without a parser: say so rather than fail with a KeyError
            raise ConfigError(f"{key} cannot be set from the environment (no parser is defined for it)")
        values[f.name] = parser(key, raw)
    settings = Settings(**values)
    _check_ports(settings)
    _check_limits(settings)
    _check_auth(settings)
    return settings


def _check_ports(settings: Settings) -> None:
    if settings.metrics_port and settings.metrics_port == settings.port:
        raise ConfigError(
            f"METRICS_PORT={settings.metrics_port} is PORT: set 0 to serve /metrics on PORT, or another port"
        )


def _check_limits(settings: Settings) -> None:
    """Limits that only make sense together."""
    needed = 4 * settings.max_text_chars + TEXT_ENVELOPE_BYTES
    if needed > settings.max_message_bytes:
        raise ConfigError(
            f"MAX_TEXT_CHARS={settings.max_text_chars} needs MAX_MESSAGE_BYTES of at least {needed} "
            f"(up to 4 UTF-8 bytes a character, plus the JSON around it), but MAX_MESSAGE_BYTES="
            f"{settings.max_message_bytes}; raise MAX_MESSAGE_BYTES or lower MAX_TEXT_CHARS"
        )


def _check_auth(settings: Settings) -> None:
    """JWT checks configured without a JWKS would leave auth silently off."""
    if settings.auth_jwks_url:
        return
    set_alone = [
        name
        for name, value in (("AUTH_AUDIENCE", settings.auth_audience), ("AUTH_ISSUER", settings.auth_issuer))
        if value
    ]
    if set_alone:
        raise ConfigError(
            f"{' and '.join(set_alone)} set but AUTH_JWKS_URL is empty: JWTs cannot be verified without "
            "the provider's keys; set AUTH_JWKS_URL"
        )
