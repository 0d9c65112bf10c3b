from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings, load_settings
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
