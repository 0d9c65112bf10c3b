from __future__ import annotations

from pathlib import Path

import pytest

from app.config import _PARSERS, Settings, load_settings
from app.errors import ConfigError


def test_defaults_without_environment() -> None:
    settings = load_settings({}, env_file=None)
    assert settings == Settings()
    assert settings.model_provider == "local"
    assert (settings.input_sample_rate, settings.output_sample_rate) == (16000, 24000)
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.tools_dir == Path("tools")


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        {
            "MODEL_PROVIDER": "NOVA_SONIC",
            "PORT": "9000",
            "INPUT_SAMPLE_RATE": "8000",
            "LOG_LEVEL": "debug",
            "WEATHER_API_KEY": "s3cret",
            "TOOLS_DIR": "/opt/tools",
        },
        env_file=None,
    )
    assert settings.model_provider == "nova_sonic"
    assert settings.port == 9000
    assert settings.input_sample_rate == 8000
    assert settings.log_level == "DEBUG"
    assert str(settings.weather_api_key) == "s3cret"
    assert "s3cret" not in repr(settings)  # secrets stay out of logs and tracebacks
    assert settings.tools_dir == Path("/opt/tools")


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VOICE=tiffany\nPORT=7000\n# a comment\n")
    settings = load_settings({"PORT": "7100"}, env_file=env_file)
    assert settings.voice == "tiffany"
    assert settings.port == 7100


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert load_settings({}, env_file=tmp_path / "absent.env") == Settings()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        pytest.param(
            "MODEL_PROVIDER",
            "gpt",
            "MODEL_PROVIDER='gpt' is not valid; allowed values: local, echo, nova_sonic",
            id="provider",
        ),
        pytest.param("INPUT_SAMPLE_RATE", "44100", "allowed values: 8000, 16000, 24000", id="input-rate"),
        pytest.param("OUTPUT_SAMPLE_RATE", "fast", "OUTPUT_SAMPLE_RATE='fast'", id="output-rate"),
        pytest.param(
            "LOG_LEVEL", "chatty", "allowed values: DEBUG, INFO, WARNING, ERROR, CRITICAL", id="log-level"
        ),
        pytest.param(
            "PORT", "99999", "PORT='99999' is not valid; expected a number from 0 to 65535", id="port"
        ),
        pytest.param("AUDIO_QUEUE_SIZE", "0", "AUDIO_QUEUE_SIZE='0'", id="queue"),
        pytest.param("SYSTEM_PROMPT", "  ", "SYSTEM_PROMPT must not be empty", id="prompt"),
        pytest.param(
            "TOOL_TIMEOUT",
            "0",
            "TOOL_TIMEOUT='0' is not valid; expected a number from 0.1 to 300.0",
            id="tool-timeout",
        ),
        pytest.param("TOOL_PROCESSES", "0", "expected a number from 1 to 64", id="tool-processes"),
    ],
)
def test_invalid_value_names_variable_and_allowed_values(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({key: value}, env_file=None)
    assert expected in str(info.value)


def test_env_example_documents_every_setting() -> None:
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    keys = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    documented = {name.upper() for name in Settings.__dataclass_fields__}
    assert documented <= keys, f"undocumented: {sorted(documented - keys)}"
    # and the defaults written there are the real ones
    for line in example.splitlines():
        if line.startswith("# ") or "=" not in line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        if value and key.lower() in Settings.__dataclass_fields__:
            assert load_settings({key: value}, env_file=None) == Settings(), key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("", "", id="empty-is-the-regional-default"),
        pytest.param(
            "https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com/",
            "https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com",
            id="privatelink",
        ),
        pytest.param("https://127.0.0.1:8443", "https://127.0.0.1:8443", id="port"),
    ],
)
def test_bedrock_endpoint_url(raw: str, expected: str) -> None:
    assert load_settings({"BEDROCK_ENDPOINT_URL": raw}, env_file=None).bedrock_endpoint_url == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("http://bedrock.internal", id="plain-http"),
        pytest.param("bedrock-runtime.us-east-1.amazonaws.com", id="no-scheme"),
        pytest.param("https://", id="no-host"),
        pytest.param("https://host/?x=1", id="query"),
    ],
)
def test_bedrock_endpoint_url_must_be_https(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"BEDROCK_ENDPOINT_URL=.* expected an https:// URL"):
        load_settings({"BEDROCK_ENDPOINT_URL": raw}, env_file=None)


def test_every_setting_has_a_parser() -> None:
    assert set(_PARSERS) == set(Settings.__dataclass_fields__)


def test_a_setting_without_a_parser_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_PARSERS, "port")
    with pytest.raises(ConfigError, match="PORT cannot be set from the environment"):
        load_settings({"PORT": "9000"}, env_file=None)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"MAX_MESSAGE_BYTES": str(64 * 1024 * 1024)},
            "MAX_MESSAGE_BYTES='67108864' is not valid; expected a number from 16384 to 16777216",
            id="above-uvicorn-default",
        ),
        pytest.param(
            {"MAX_MESSAGE_BYTES": "4096"},
            "MAX_MESSAGE_BYTES='4096' is not valid; expected a number from 16384",
            id="below-one-audio-frame",
        ),
        pytest.param(
            {"MAX_TEXT_CHARS": "300000"},
            "MAX_TEXT_CHARS=300000 needs MAX_MESSAGE_BYTES of at least 1200064 "
            "(up to 4 UTF-8 bytes a character, plus the JSON around it), but MAX_MESSAGE_BYTES=1048576",
            id="text-cannot-fit",
        ),
        pytest.param(
            {"MAX_MESSAGE_BYTES": "16384", "MAX_TEXT_CHARS": "8000"},
            "MAX_TEXT_CHARS=8000 needs MAX_MESSAGE_BYTES of at least 32064",
            id="text-cannot-fit-small-frames",
        ),
    ],
)
def test_message_limits_that_cannot_work_are_refused(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ, env_file=None)
    assert expected in str(info.value)


def test_message_limits_that_fit_are_accepted() -> None:
    settings = load_settings({"MAX_MESSAGE_BYTES": "16384", "MAX_TEXT_CHARS": "4080"}, env_file=None)
    assert (settings.max_message_bytes, settings.max_text_chars) == (16384, 4080)


def test_debug_loggers_are_logger_names() -> None:
    settings = load_settings({"DEBUG_LOGGERS": " websockets, strands.bidi ,"}, env_file=None)
    assert settings.debug_loggers == ("websockets", "strands.bidi")
    with pytest.raises(ConfigError) as info:
        load_settings({"DEBUG_LOGGERS": "websockets,http core"}, env_file=None)
    assert "DEBUG_LOGGERS: 'http core' is not a logger name" in str(info.value)
