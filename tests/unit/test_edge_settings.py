"""The edge's settings: what each accepts, and the mistakes refused at startup."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings, load_settings
from app.edge.auth import ApiKeys, auth_check
from app.errors import ConfigError

KEY = "a-key-of-twenty-chars"


def load(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def test_the_defaults_turn_auth_off_and_allow_the_requests_own_host() -> None:
    settings = load()
    assert settings.allowed_origins == ()
    assert auth_check(settings, httpx.AsyncClient()) is None  # not in the gate at all
    assert settings.forwarded_allow_ips == ("127.0.0.1", "::1")


def test_origins_are_kept_normalized() -> None:
    settings = load(ALLOWED_ORIGINS=" HTTPS://App.example.com:443 , http://localhost:3000/")
    assert settings.allowed_origins == ("https://app.example.com", "http://localhost:3000")
    assert load(ALLOWED_ORIGINS="*").allowed_origins == ("*",)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOWED_ORIGINS": "app.example.com"}, "ALLOWED_ORIGINS: 'app.example.com' is not an origin"),
        ({"ALLOWED_ORIGINS": "https://app.example.com/voice"}, "is not an origin"),
        ({"AUTH_TOKENS": "short-key"}, "AUTH_TOKENS: key #1 must be at least 16 characters"),
        ({"AUTH_TOKENS": f"{KEY},with space in it 123456"}, "key #2 must be"),
        ({"AUTH_JWKS_URL": "http://idp.example.com/jwks"}, "expected an https:// URL"),
        ({"AUTH_JWKS_URL": "https://idp.test/jwks", "AUTH_ALGORITHMS": "none"}, "'none' is not allowed (no"),
        (
            {"AUTH_JWKS_URL": "https://idp.test/jwks", "AUTH_ALGORITHMS": "RS256,HS256"},
            "'HS256' is not allowed",
        ),
        ({"AUTH_ALGORITHMS": " , "}, "must name at least one algorithm"),
        ({"AUTH_AUDIENCE": "voice"}, "AUTH_AUDIENCE set but AUTH_JWKS_URL is empty"),
        ({"AUTH_ISSUER": "https://idp.test/"}, "AUTH_ISSUER set but AUTH_JWKS_URL is empty"),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.0/8,proxy.internal"}, "'proxy.internal' is not an IP address"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_mistakes_stop_startup_with_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(**env)
    assert message in str(error.value)
    assert KEY not in str(error.value)  # a message names a key's place, never the key


def test_auth_settings_are_read() -> None:
    settings = load(
        AUTH_TOKENS=f" {KEY} ,, another-key-0123456789",
        AUTH_JWKS_URL="http://localhost:8081/jwks",  # http to this machine: a local provider
        AUTH_AUDIENCE="voice, voice-dev",
        AUTH_ALGORITHMS="RS256,ES256",
        FORWARDED_ALLOW_IPS="10.0.0.0/16, *",
    )
    assert str(settings.auth_tokens) == f"{KEY},another-key-0123456789"
    assert KEY not in repr(settings)
    assert settings.auth_audience == ("voice", "voice-dev")
    assert settings.auth_algorithms == ("RS256", "ES256")
    assert settings.forwarded_allow_ips == ("10.0.0.0/16", "*")


def test_api_keys_match_by_number_and_nothing_else() -> None:
    keys = ApiKeys([KEY, "another-key-0123456789"])
    assert keys.match("another-key-0123456789") == 2
    assert keys.match(KEY) == 1
    assert keys.match(KEY[:-1]) is None
    assert keys.match(KEY + "x") is None
    assert keys.match("") is None
