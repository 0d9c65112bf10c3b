"""The text side of the local model: the sentences a reply is spoken in, one at a time,
and the words of a user transcript still to show once the final hypothesis is known."""

from __future__ import annotations

import re
from typing import Final

_SENTENCE_END: Final = re.compile(r"(?<=[.!?;:])\s+")
_MAX_SENTENCE_CHARS: Final = 240


def split_sentences(buffer: str, final: bool) -> tuple[list[str], str]:
    """Complete sentences in `buffer`, and the rest (all of it once `final`)."""
    parts = _SENTENCE_END.split(buffer)
    done, rest = parts[:-1], parts[-1]
    while len(rest) > _MAX_SENTENCE_CHARS:  # no punctuation for a long while: cut at a space
        cut = rest.rfind(" ", 0, _MAX_SENTENCE_CHARS)
        cut = cut if cut > 0 else _MAX_SENTENCE_CHARS
        done.append(rest[:cut])
        rest = rest[cut:].lstrip()
    if final and rest.strip():
        done.append(rest)
        rest = ""
    return [s.strip() for s in done if s.strip()], rest


def common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def unshown_words(shown: list[str], final: list[str]) -> list[str]:
    """The words of `final` still to show after `shown`: those after the longest run of
    `shown`'s last words found in `final` (partials may lack a word the final has), or
    else those after the words both begin with."""
    for size in range(len(shown), 0, -1):
        tail = shown[-size:]
        for start in range(len(final) - size + 1):
            if final[start : start + size] == tail:
                return final[start + size :]
    return final[common_prefix(shown, final) :]
