"""Origins as the allow-list compares them: normalized, and matched against the Host."""

from __future__ import annotations

import pytest

from app.edge.origin import normalize, same_host


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://app.example.com:443", "http://app.example.com:443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", None),  # sandboxed frames, file: pages
        ("file:///home/me/page.html", None),
        ("chrome-extension://abcdef", None),
        ("https://app.example.com/path", None),
        ("https://user@app.example.com", None),
        ("https://app.example.com:99999", None),
        ("https://", None),
    ],
)
def test_origins_are_normalized(origin: str, normalized: str | None) -> None:
    assert normalize(origin) == normalized


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://voice.example.com", "voice.example.com", True),
        ("http://voice.example.com", "voice.example.com", True),  # the scheme is not known behind a proxy
        ("https://Voice.Example.com", "voice.example.COM", True),
        ("https://voice.example.com", "voice.example.com:443", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("https://voice.example.com:8443", "voice.example.com", False),  # nginx's $host drops the port
        ("https://voice.example.com", "voice.example.com:8443", False),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
        ("https://evil.example", "voice.example.com", False),
        ("https://voice.example.com.evil.example", "voice.example.com", False),
        ("null", "voice.example.com", False),
        ("https://voice.example.com", "", False),
        ("https://voice.example.com", "voice.example.com:bad", False),
    ],
)
def test_same_host_compares_host_and_port(origin: str, host: str, same: bool) -> None:
    assert same_host(origin, host) is same
