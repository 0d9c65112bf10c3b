"""The rules brain's intents: what it hears, which tool it asks for, what it says."""

from __future__ import annotations

from typing import Any

import pytest

from app.models.local.brain import CallTool, Say
from app.models.local.rules import RulesBrain, words_to_number

TOOLS = {"calculator", "current_time", "weather"}
pytestmark = pytest.mark.anyio


@pytest.fixture
def brain() -> RulesBrain:
    return RulesBrain()


@pytest.mark.parametrize(
    ("text", "tool", "tool_input"),
    [
        ("what is 12 times 7", "calculator", {"expression": "12 * 7"}),
        ("what's twelve times seven", "calculator", {"expression": "12 * 7"}),
        ("What's twelve times seven?", "calculator", {"expression": "12 * 7"}),
        ("calculate 15 plus 27", "calculator", {"expression": "15 + 27"}),
        ("calculate fifteen plus twenty seven", "calculator", {"expression": "15 + 27"}),
        ("square root of 81", "calculator", {"expression": "sqrt(81)"}),
        ("what is the square root of eighty one", "calculator", {"expression": "sqrt(81)"}),
        ("how much is one hundred and five divided by five", "calculator", {"expression": "105 / 5"}),
        ("what is 2.5 x 4", "calculator", {"expression": "2.5 * 4"}),
        ("12 * 7", "calculator", {"expression": "12 * 7"}),
        ("what is nine minus twenty", "calculator", {"expression": "9 - 20"}),
        ("what time is it", "current_time", {}),
        ("what time is it in Tokyo", "current_time", {"timezone": "Tokyo"}),
        ("what's the time in new york", "current_time", {"timezone": "New York"}),
        ("weather in Paris", "weather", {"location": "Paris"}),
        ("what's the weather like in London?", "weather", {"location": "London"}),
    ],
)
def test_intents_ask_for_tools(brain: RulesBrain, text: str, tool: str, tool_input: dict[str, Any]) -> None:
    [event] = brain.reply(text, TOOLS)
    assert isinstance(event, CallTool)
    assert (event.name, event.input) == (tool, tool_input)


@pytest.mark.parametrize("text", ["hello", "Hi there", "good morning", "help", "what can you do"])
def test_greetings_and_help_list_the_registered_tools(brain: RulesBrain, text: str) -> None:
    [event] = brain.reply(text, TOOLS | {"roll_dice"})
    assert isinstance(event, Say)
    assert (
        "calculator, current time, roll dice and weather" in event.text
    )  # new plugins listed, no code change


def test_anything_else_says_what_it_heard_and_how_to_plug_in_a_model(brain: RulesBrain) -> None:
    [event] = brain.reply("tell me a joke", TOOLS)
    assert isinstance(event, Say)
    assert "I heard: tell me a joke" in event.text
    assert "LOCAL_TEXT_MODEL" in event.text


def test_weather_without_a_place_asks_for_one(brain: RulesBrain) -> None:
    [event] = brain.reply("what is the weather", TOOLS)
    assert isinstance(event, Say)
    assert "Which city" in event.text


def test_missing_tool_is_explained(brain: RulesBrain) -> None:
    [event] = brain.reply("what is 2 plus 2", {"weather"})
    assert isinstance(event, Say)
    assert "calculator tool" in event.text
    assert "not installed" in event.text


async def test_tool_results_are_spoken(brain: RulesBrain) -> None:
    messages: Any = [
        {"role": "user", "content": [{"text": "what is 12 times 7"}]},
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "t1", "name": "calculator", "input": {"expression": "12 * 7"}}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "status": "success", "content": [{"text": "84"}]}}
            ],
        },
    ]
    events = [e async for e in brain.respond(messages, [], None)]
    assert events == [Say("12 times 7 is 84.")]
    messages[-1]["content"][0]["toolResult"] |= {
        "status": "error",
        "content": [{"text": "Error: division by zero"}],
    }
    events = [e async for e in brain.respond(messages, [], None)]
    assert events == [Say("Sorry, the calculator tool failed: division by zero")]


async def test_respond_reads_the_last_user_message(brain: RulesBrain) -> None:
    messages: Any = [{"role": "user", "content": [{"text": "what time is it in Tokyo"}]}]
    specs: Any = [{"name": name} for name in TOOLS]
    [event] = [e async for e in brain.respond(messages, specs, None)]
    assert isinstance(event, CallTool)
    assert event.input == {"timezone": "Tokyo"}


@pytest.mark.parametrize(
    ("words", "number"),
    [
        ("twelve", 12),
        ("twenty one", 21),
        ("one hundred and five", 105),
        ("two thousand three hundred", 2300),
        ("a hundred", 100),
        ("three point one four", 3.14),
        ("42", 42),
        ("banana", None),
    ],
)
def test_words_to_number(words: str, number: float | None) -> None:
    assert words_to_number(words) == number


def test_grammar_covers_the_spoken_intents(brain: RulesBrain) -> None:
    grammar = brain.grammar()
    assert grammar.startswith("#JSGF V1.0;")
    for phrase in ("square root of", "what time is it", "new york", "multiplied by", "what can you do"):
        assert phrase in grammar
