"""`rules`: a small deterministic intent engine, the local model's default brain.

This is an offline development brain, not a language model. It understands arithmetic
(in digits or words: "what is 12 times 7", "what's twelve times seven", "square root of
81"), the time ("what time is it in Tokyo"), the weather ("weather in Paris"), greetings
and "help"; everything else gets an answer saying what it heard and how to plug in a
real model. It asks for tools through the agent's tool loop like any model would, and
lists whatever tools are registered when asked for help.

It also writes the JSGF grammar the recognizer uses, so speech is matched against the
phrases this brain understands.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from strands.types.content import Messages
from strands.types.tools import ToolSpec

from app.config import Settings
from app.models.local.brain import BrainEvent, CallTool, Say

_UNITS: Final = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS: Final = [
    *["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"],
    *["sixteen", "seventeen", "eighteen", "nineteen"],
]
_TENS: Final = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SMALL: Final = {w: i for i, w in enumerate(_UNITS)} | {w: 10 + i for i, w in enumerate(_TEENS)}
_TENS_VALUE: Final = {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_SCALES: Final = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

_OPERATORS: Final = {
    "plus": "+", "add": "+", "+": "+",
    "minus": "-", "less": "-", "-": "-",
    "times": "*", "multiplied by": "*", "x": "*", "*": "*", "×": "*",
    "divided by": "/", "over": "/", "/": "/", "÷": "/",
    "to the power of": "**", "^": "**",
}  # fmt: skip
_SPOKEN_OPERATORS: Final = {
    "+": "plus",
    "-": "minus",
    "*": "times",
    "/": "divided by",
    "**": "to the power of",
}

# Cities offered to speech recognition (each also names an IANA zone, for the time).
CITIES: Final = [
    *["tokyo", "paris", "london", "berlin", "sydney", "madrid", "rome", "moscow", "dubai"],
    *["singapore", "chicago", "toronto"],
    *["denver", "dublin", "lisbon", "vienna", "amsterdam", "stockholm"],
    "new york",
    "los angeles",
]

_NUMBER_WORDS: Final = "|".join([*_SMALL, *_TENS_VALUE, *_SCALES, "and", "a", "point"])
_NUMBER: Final = rf"(?:-?\d+(?:\.\d+)?|(?:(?:{_NUMBER_WORDS})[\s-]*)+)"
_OP: Final = "|".join(re.escape(op) for op in sorted(_OPERATORS, key=len, reverse=True))
_ASK: Final = (
    r"^(?:(?:hey|ok|okay|please|so)\s+)*"
    r"(?:what\s+is|what's|whats|calculate|compute|how\s+much\s+is|tell me)?\s*"
)
_ARITHMETIC: Final = re.compile(
    rf"{_ASK}(?:the\s+)?(?P<a>{_NUMBER})\s*(?P<op>{_OP})\s*(?P<b>{_NUMBER})\s*\??$"
)
_SQUARE_ROOT: Final = re.compile(rf"{_ASK}(?:the\s+)?square\s+root\s+of\s+(?P<a>{_NUMBER})\s*\??$")
_TIME: Final = re.compile(
    r"\b(?:what\s+time|what's\s+the\s+time|the\s+time|time\s+is\s+it)\b"
    r"(?:.*?\bin\s+(?P<place>[a-z .'-]+?))?\s*\??$"
)
_WEATHER: Final = re.compile(r"\bweather\b(?:.*?\b(?:in|for|at)\s+(?P<place>[a-z .'-]+?))?\s*\??$")
_GREETING: Final = re.compile(
    r"^(?:hello|hi|hey|good\s+(?:morning|afternoon|evening)|greetings)(?:\s+there)?\b"
)
_HELP: Final = re.compile(r"\b(?:help|what\s+can\s+you\s+do|what\s+do\s+you\s+do)\b")


def words_to_number(text: str) -> float | None:
    """'twelve' -> 12, 'one hundred and five' -> 105, '2.5' -> 2.5; None if not a number."""
    text = (
        text.strip().replace("-", " ") if not re.fullmatch(r"-?\d+(?:\.\d+)?", text.strip()) else text.strip()
    )
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        return float(text)
    words = [w for w in text.split() if w != "and"]
    if not words:
        return None
    if "point" in words:
        whole, _, frac = " ".join(words).partition(" point ")
        head = words_to_number(whole) if whole.strip() and whole.strip() != "point" else 0.0
        digits = [_SMALL.get(w) for w in frac.split()]
        if head is None or not digits or any(d is None or d > 9 for d in digits):
            return None
        return head + float("0." + "".join(str(d) for d in digits))
    total, current = 0, 0
    for word in words:
        if word == "a":
            current = max(current, 1)
        elif word in _SMALL:
            current += _SMALL[word]
        elif word in _TENS_VALUE:
            current += _TENS_VALUE[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total += max(current, 1) * _SCALES[word]
            current = 0
        else:
            return None
    return float(total + current)


def _plain(number: float) -> str:
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _normalise(text: str) -> str:
    text = text.lower().strip()
    text = re.sub(r"[,!]+", " ", text)
    text = re.sub(r"(?<=\d)\s*x\s*(?=\d)", " x ", text)
    return re.sub(r"\s+", " ", text).rstrip(".")


def _tool_phrase(name: str) -> str:
    return name.replace("_", " ")


def _spoken_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _last_tool_uses(messages: Messages) -> dict[str, dict[str, Any]]:
    for message in reversed(messages):
        if message["role"] == "assistant":
            return {
                c["toolUse"]["toolUseId"]: dict(c["toolUse"]) for c in message["content"] if "toolUse" in c
            }
    return {}


def _result_text(result: dict[str, Any]) -> str:
    return " ".join(str(c.get("text", c.get("json", ""))) for c in result.get("content", [])).strip()


class RulesBrain:
    name = "rules"

    async def respond(
        self, messages: Messages, tools: Sequence[ToolSpec], system_prompt: str | None
    ) -> AsyncIterator[BrainEvent]:
        if not messages:
            return
        last = messages[-1]
        results = [c["toolResult"] for c in last["content"] if "toolResult" in c]
        if results:
            uses = _last_tool_uses(messages)
            for result in results:
                use = uses.get(result["toolUseId"], {"name": "the tool", "input": {}})
                yield Say(self._after_tool(use, dict(result)))
            return
        text = " ".join(c["text"] for c in last["content"] if "text" in c)
        for event in self.reply(text, {spec["name"] for spec in tools}):
            yield event

    def reply(self, text: str, tool_names: set[str]) -> list[BrainEvent]:
        said = _normalise(text)
        intent = self._intent(said)
        if intent is None:
            if _GREETING.search(said):
                return [Say(self._help(tool_names, greeting=True))]
            if _HELP.search(said):
                return [Say(self._help(tool_names, greeting=False))]
            if _WEATHER.search(said):
                return [Say("Which city? Say, for example: what's the weather in Paris.")]
            return [Say(self._fallback(text))]
        name, tool_input = intent
        if name not in tool_names:
            return [Say(f"I would use the {_tool_phrase(name)} tool for that, but it is not installed here.")]
        return [CallTool(f"rules-{uuid.uuid4().hex[:12]}", name, tool_input)]

    def _intent(self, said: str) -> tuple[str, dict[str, Any]] | None:
        if match := _SQUARE_ROOT.match(said):
            number = words_to_number(match["a"])
            if number is not None:
                return "calculator", {"expression": f"sqrt({_plain(number)})"}
        if match := _ARITHMETIC.match(said):
            a, b = words_to_number(match["a"]), words_to_number(match["b"])
            if a is not None and b is not None:
                return "calculator", {"expression": f"{_plain(a)} {_OPERATORS[match['op']]} {_plain(b)}"}
        if match := _WEATHER.search(said):
            place = (match["place"] or "").strip()
            return ("weather", {"location": place.title()}) if place else None
        if match := _TIME.search(said):
            place = (match["place"] or "").strip()
            return "current_time", {"timezone": place.title()} if place else {}
        return None

    def _help(self, tool_names: set[str], greeting: bool) -> str:
        opener = "Hello! " if greeting else ""
        if not tool_names:
            return opener + "I am the offline rules brain, and no tools are installed."
        tools = _spoken_list([_tool_phrase(n) for n in sorted(tool_names)])
        return (
            f"{opener}I can use these tools: {tools}. Try: what is 12 times 7, "
            "what time is it in Tokyo, or what's the weather in Paris."
        )

    def _fallback(self, text: str) -> str:
        heard = text.strip() or "nothing I could make out"
        return (
            f"I heard: {heard}. I am the offline rules brain, so I only understand arithmetic, "
            "the time, the weather and help. For real conversation, set LOCAL_BRAIN to text_model "
            "with a LOCAL_TEXT_MODEL, or use the nova_sonic provider."
        )

    def _after_tool(self, use: dict[str, Any], result: dict[str, Any]) -> str:
        name, tool_input, text = use.get("name", ""), use.get("input", {}), _result_text(result)
        if result.get("status") != "success":
            return f"Sorry, the {_tool_phrase(name)} tool failed: {text.removeprefix('Error: ')}"
        if name == "calculator":
            return f"{self._spoken_expression(str(tool_input.get('expression', '')))} is {text}."
        if name == "current_time":
            return f"It is {text}."
        return f"{text}." if name == "weather" else f"The {_tool_phrase(name)} tool says: {text}"

    @staticmethod
    def _spoken_expression(expression: str) -> str:
        if match := re.fullmatch(r"sqrt\((.+)\)", expression):
            return f"The square root of {match[1]}"
        parts = expression.split()
        return " ".join(_SPOKEN_OPERATORS.get(p, p) for p in parts)

    def grammar(self) -> str:
        """JSGF for the recognizer: the phrases `reply` understands, with numbers in words."""
        cities = " | ".join(CITIES)
        return f"""#JSGF V1.0;
grammar voice;
public <utterance> = <calc> | <time> | <weather> | <greeting> | <help>;
<digit> = {" | ".join(_UNITS[1:])};
<teen> = {" | ".join(_TEENS)};
<tens> = {" | ".join(_TENS)};
<below100> = zero | <digit> | <teen> | <tens> [<digit>];
<number> = <below100> | <digit> hundred [[and] <below100>];
<op> = plus | minus | times | multiplied by | divided by | over;
<ask> = what is | what's | calculate | how much is;
<calc> = <ask> <number> <op> <number> | [<ask>] [the] square root of <number>;
<city> = {cities};
<time> = (what time is it | what is the time | what's the time) [in <city>];
<weather> = (what is | what's | how is) the weather [like] in <city> | weather in <city>;
<greeting> = hello | hi | hey | good morning | good afternoon | good evening | hello there;
<help> = help | what can you do | hello there what can you do;
"""


def rules_brain(settings: Settings) -> RulesBrain:
    return RulesBrain()
