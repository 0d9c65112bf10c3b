from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path
from types import ModuleType

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"test_tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


calc = _load("calculator")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("12*7", "84"),
        ("12 × 7", "84"),
        ("15 + 27", "42"),
        ("2^10", "1024"),
        ("2**0.5", "1.41421356237"),
        ("sqrt(81)", "9"),
        ("sqrt(2)", "1.41421356237"),
        ("(1 + 2) * 3 - 4 / 2", "7"),
        ("7 // 2 + 7 % 2", "4"),
        ("-3 + +2", "-1"),
        ("log(100, 10)", "2"),
        ("log10(1000)", "3"),
        ("factorial(10)", "3628800"),
        ("round(pi, 3)", "3.142"),
        ("max(3, 9, 4)", "9"),
        ("sin(0) + cos(0)", "1"),
        ("10 / 4", "2.5"),
        ("1e3 * 2", "2000"),
        ("2**-1", "0.5"),
        ("0.5**10000", "0"),
        ("1**(10**10)", "1"),
    ],
)
async def test_evaluates(expression: str, expected: str) -> None:
    assert calc.format_number(calc.evaluate(expression)) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0**-1", "division by zero"),
        ("2**10**10", "too large"),
        ("9**9**9", "too large"),
        ("10.0**400", "too large"),
        ("factorial(100000)", "limited to 170"),
        ("factorial(-1)", "whole number"),
        ("sqrt(-1)", "not a real number"),
        ("(-8)**(1/3)", "not a real number"),
        ("log(0)", "positive number"),
        ("__import__('os').system('true')", "only numbers"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('x')", "unknown function"),
        ("x + 1", "unknown name 'x'"),
        ("(1).real", "only numbers"),
        ("[1, 2]", "only numbers"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("1 +", "cannot read"),
        ("", "empty"),
        ("1+" * 300 + "1", "longer than 500"),
        ("max()", "max:"),
        ("sqrt(x=4)", "only numbers"),
    ],
)
def test_refuses_with_a_clear_message(expression: str, message: str) -> None:
    with pytest.raises(calc.CalculationError) as info:
        calc.evaluate(expression)
    assert message in str(info.value)


def test_huge_power_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(calc.CalculationError):
        calc.evaluate("2**10**10")
    # Not a benchmark: a hang would take minutes; this just shows no work was attempted.
    assert time.perf_counter() - started < 1.0


def test_large_but_allowed_numbers() -> None:
    assert calc.evaluate("2**1000") == 2**1000
    assert math.isclose(calc.evaluate("1.5**1000"), 1.5**1000)


async def test_tool_returns_text() -> None:
    assert await calc.calculator("12*7") == "84"
    assert calc.calculator.tool_name == "calculator"
    spec = calc.calculator.tool_spec
    assert spec["inputSchema"]["json"]["required"] == ["expression"]


pytestmark = pytest.mark.anyio
