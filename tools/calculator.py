"""calculator: arithmetic and math functions through a safe AST evaluator (no eval).

Only numbers, + - * / // % ** (also ^), parentheses, the constants pi/e/tau and a fixed
set of math functions are accepted. Sizes are checked before work is done, so an input
like 2**10**10 is refused at once instead of tying up the server.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from strands import tool

MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 1024  # about 308 decimal digits, the range of a float
MAX_FACTORIAL = 170

Number = int | float


class CalculationError(ValueError):
    pass


def _check(value: Number) -> Number:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("the result is too large")
    if isinstance(value, float) and math.isinf(value):
        raise CalculationError("the result is too large")
    if isinstance(value, float) and math.isnan(value):
        raise CalculationError("the result is not a number")
    return value


def _power(base: Number, exponent: Number) -> Number:
    if base == 0 and exponent < 0:
        raise CalculationError("division by zero")
    # Estimate the size of the result before computing it.
    if abs(base) > 1 and abs(exponent) > 1 and abs(exponent) * math.log2(abs(base)) > MAX_INT_BITS:
        if exponent > 0:
            raise CalculationError("the result is too large")
        return 0.0
    result = base**exponent
    if isinstance(result, complex):
        raise CalculationError("the result is not a real number")
    return result


def _divide(fn: Callable[[Number, Number], Number]) -> Callable[[Number, Number], Number]:
    def divide(a: Number, b: Number) -> Number:
        if b == 0:
            raise CalculationError("division by zero")
        return fn(a, b)

    return divide


def _factorial(n: Number) -> Number:
    if not (isinstance(n, int) or float(n).is_integer()) or n < 0:
        raise CalculationError("factorial needs a whole number that is not negative")
    if n > MAX_FACTORIAL:
        raise CalculationError(f"factorial is limited to {MAX_FACTORIAL}")
    return math.factorial(int(n))


def _log(x: Number, base: Number = math.e) -> Number:
    if x <= 0 or base <= 0 or base == 1:
        raise CalculationError("log needs a positive number (and a positive base other than 1)")
    return math.log(x, base)


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculationError("the square root of a negative number is not a real number")
    return math.isqrt(x) if isinstance(x, int) and math.isqrt(x) ** 2 == x else math.sqrt(x)


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _divide(operator.truediv),
    ast.FloorDiv: _divide(operator.floordiv),
    ast.Mod: _divide(operator.mod),
    ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _sqrt,
    "cbrt": math.cbrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
    "log": _log,
    "ln": _log,
    "log10": lambda x: _log(x, 10),
    "log2": lambda x: _log(x, 2),
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "hypot": math.hypot,
    "degrees": math.degrees,
    "radians": math.radians,
    "min": min,
    "max": max,
}


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _check(_BINARY[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            raise CalculationError(
                f"unknown function {node.func.id!r}; known: {', '.join(sorted(_FUNCTIONS))}"
            )
        args = [_eval(arg) for arg in node.args]
        try:
            return _check(fn(*args))
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, CalculationError):
                raise
            raise CalculationError(f"{node.func.id}: {exc}") from None
    if isinstance(node, ast.Name):
        raise CalculationError(f"unknown name {node.id!r}")
    raise CalculationError("only numbers, arithmetic operators and math functions are allowed")


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression, or raise CalculationError saying why not."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/").strip()
    if not text:
        raise CalculationError("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculationError(f"cannot read {expression!r} as an arithmetic expression") from None
    try:
        return _eval(tree.body)
    except OverflowError:
        raise CalculationError("the result is too large") from None
    except RecursionError:
        raise CalculationError("the expression is nested too deeply") from None


def format_number(value: Number) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


@tool
async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Supports + - * / // % ** (or ^), parentheses, pi, e, and the functions sqrt, cbrt,
    abs, round, floor, ceil, factorial, log (natural, or log(x, base)), log10, log2,
    exp, sin, cos, tan, asin, acos, atan, atan2, hypot, degrees, radians, min, max.

    Args:
        expression: The expression, for example "12 * 7" or "sqrt(81)".
    """
    return format_number(evaluate(expression))
