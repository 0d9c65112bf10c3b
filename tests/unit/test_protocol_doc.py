"""docs/protocol.md is the contract: every message type and error code it lists exists in
the code, and every one the code has is listed."""

from __future__ import annotations

import re
from pathlib import Path

from app.wire import inbound, outbound

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _first_cells(section: str) -> list[str]:
    """The first cell of each row of the section's table (header and rule excluded)."""
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [row.split("|")[1].strip() for row in rows[2:]]


def test_client_message_types_match_the_doc() -> None:
    cells = _first_cells(_section("Client to server"))
    documented = {m for cell in cells for m in re.findall(r'\{"type":"(\w+)"', cell)}
    assert documented == set(inbound.MESSAGE_TYPES)


def test_server_message_types_match_the_doc() -> None:
    cells = _first_cells(_section("Server to client"))
    documented = {m for cell in cells for m in re.findall(r"`(\w+)`", cell)}
    assert documented == outbound.MESSAGE_TYPES


def test_error_codes_match_the_doc() -> None:
    cells = _first_cells(_section("Errors"))
    documented = {m for cell in cells for m in re.findall(r"`(\w+)`", cell)}
    assert documented == outbound.ERROR_CODES
