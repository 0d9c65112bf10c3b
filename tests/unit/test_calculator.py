from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from strands.types.tools import ToolUse

from app.config import Settings
from app.plugins import SERVICES_KEY, ToolServices
from app.workers import ProcessWorkers
from tests.support import load_tool_module

calc = load_tool_module("calculator")


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
        ("max()", "max takes at least 1 number, not 0"),
        ("atan2(1)", "atan2 takes 2 numbers, not 1"),
        ("ln(1, 2)", "ln takes 1 number, not 2"),
        ("round(1, 0.5)", "round's second argument needs a whole number"),
        ("asin(2)", "asin(2) is not defined"),
        ("sqrt(x=4)", "only numbers"),
    ],
)
def test_refuses_with_a_clear_message(expression: str, message: str) -> None:
    with pytest.raises(calc.CalculationError) as info:
        calc.evaluate(expression)
    assert message in str(info.value)


def test_large_but_allowed_numbers() -> None:
    assert calc.evaluate("2**1000") == 2**1000
    assert math.isclose(calc.evaluate("1.5**1000"), 1.5**1000)


# Inputs that, unbounded, would keep a CPU busy for minutes (round(1, -10**8) computes
# 10**100000000) or build huge numbers. Each runs in a worker process under a deadline,
# so a missing bound fails the test with a TimeoutError instead of hanging the run.
QUICK = 2.0
BIG = "(2**1023 + (2**1023 - 1))"  # the largest integer allowed: 1024 bits
COSTLY = [
    pytest.param("round(1, -10**8)", "0", id="round-int-huge-negative-digits"),
    pytest.param("round(2**1000, -10**8)", "0", id="round-big-int-huge-negative-digits"),
    pytest.param("round(1.5, -10**8)", "0", id="round-float-huge-negative-digits"),
    pytest.param("round(1, 10**300)", "1", id="round-int-huge-positive-digits"),
    pytest.param("round(pi, 10**8)", "3.14159265359", id="round-float-huge-positive-digits"),
    pytest.param("round(5, 1e308)", "5", id="round-float-digits"),
    pytest.param("round(123456, -2)", "123500", id="round-negative-digits-still-work"),
    pytest.param("round(1e308, -400)", "0", id="round-largest-float"),
    pytest.param("factorial(2**1023)", "limited to 170", id="factorial-huge-int"),
    pytest.param("factorial(1e308)", "limited to 170", id="factorial-huge-float"),
    pytest.param("factorial(170) * factorial(170)", "too large", id="factorial-product"),
    pytest.param("9" * 400, "too large", id="400-digit-literal"),
    pytest.param("0x" + "f" * 300, "too large", id="hex-literal"),
    pytest.param("1e999", "too large", id="float-literal-inf"),
    pytest.param("-1e999", "too large", id="negative-float-literal-inf"),
    pytest.param("1e308 * 10", "too large", id="float-overflow"),
    pytest.param("2**1023 + 2**1023", "too large", id="sum-past-1024-bits"),
    pytest.param("2**1023 * 2**1023", "too large", id="product-of-1024-bit-ints"),
    pytest.param("2 ** 2 ** 2 ** 2 ** 2", "too large", id="power-tower"),
    pytest.param("1.0000001 ** (10**300)", "too large", id="float-base-huge-exponent"),
    pytest.param("10 ** -(10**8)", "0", id="huge-negative-exponent"),
    pytest.param("0.5 ** (2**1000)", "0", id="fraction-huge-exponent"),
    pytest.param("(-1) ** (2**1000)", "1", id="minus-one-huge-exponent"),
    pytest.param("floor(1e308)", str(math.floor(1e308)), id="floor-largest-float"),
    pytest.param("ceil(1e308) * 2", "too large", id="ceil-largest-float-doubled"),
    pytest.param(f"{BIG} % 7", str((2**1024 - 1) % 7), id="mod-1024-bit-int"),
    pytest.param(f"{BIG} // 3", str((2**1024 - 1) // 3), id="floordiv-1024-bit-int"),
    pytest.param("1e308 // 1e-308", "too large", id="floordiv-float-overflow"),
    pytest.param("1 / 1e-309", "too large", id="div-subnormal"),
    pytest.param("exp(10**300)", "too large for exp", id="exp-overflow"),
    pytest.param(f"sqrt({BIG})", "too large for sqrt", id="sqrt-1024-bit-int"),
    pytest.param(f"cbrt({BIG})", "too large for cbrt", id="cbrt-1024-bit-int"),
    pytest.param(f"sin({BIG})", "too large for sin", id="sin-1024-bit-int"),
    pytest.param(f"log({BIG})", "709.782712893", id="log-1024-bit-int"),
    pytest.param("hypot(" + ",".join(["1e308"] * 40) + ")", "too large", id="hypot-many-huge"),
    pytest.param("atan2(1e308, 1e-308)", "1.57079632679", id="atan2-extremes"),
    pytest.param("max(" + ",".join(["7"] * 200) + ")", "7", id="max-200-args"),
    pytest.param("-" * 400 + "1", "1", id="400-unary-minus"),
    pytest.param("(" * 100 + "1" + ")" * 100, "1", id="100-parentheses"),
    pytest.param("(" * 240 + "1" + ")" * 240, "cannot read", id="240-parentheses"),
    pytest.param("1" + "+1" * 249, "250", id="250-additions"),
]


@pytest.fixture
async def workers() -> AsyncIterator[ProcessWorkers]:
    pool = ProcessWorkers(1)
    await pool.run(calc.calculate, "1")  # started outside the timed part
    yield pool
    await pool.aclose()


@pytest.mark.parametrize(("expression", "expected"), COSTLY)
async def test_costly_input_answers_quickly(workers: ProcessWorkers, expression: str, expected: str) -> None:
    try:
        with anyio.fail_after(QUICK):
            answer = await workers.run(calc.calculate, expression)
    except calc.CalculationError as exc:
        answer = str(exc)
    assert expected in answer


async def test_tool_evaluates_in_a_worker_process(workers: ProcessWorkers) -> None:
    services = ToolServices(settings=Settings(), http=httpx.AsyncClient(), workers=workers)
    tool_use: ToolUse = {"toolUseId": "t-1", "name": "calculator", "input": {"expression": "12*7"}}
    state = {"agent": None, SERVICES_KEY: services}
    events = [event async for event in calc.calculator.stream(tool_use, state)]
    await services.http.aclose()
    assert events[-1]["tool_result"] == {"toolUseId": "t-1", "status": "success", "content": [{"text": "84"}]}
    assert len(workers.pids) == 1
    assert workers.pids[0] != os.getpid()
    assert calc.calculator.tool_name == "calculator"
    spec = calc.calculator.tool_spec
    assert spec["inputSchema"]["json"]["required"] == ["expression"]


pytestmark = pytest.mark.anyio
