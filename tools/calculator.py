"""calculator: arithmetic and math functions through a safe AST evaluator (no eval).

Only numbers, + - * / // % ** (also ^), parentheses, the constants pi/e/tau and a fixed
set of math functions are accepted. Every step is bounded before it runs, so no input
can make it slow: the expression is at most 500 characters (so at most ~250 steps), and
every number it reads or produces, literals included, is a float that is finite or an
integer of at most 1024 bits (about 308 digits, the range of a float). With operands that
small, + - * / // % and the math functions all take microseconds. The operations that
could still explode are sized first: `**` by an estimate of its result, `round` by
clamping its digits (`round(1, -10**8)` would otherwise compute 10**100000000), and
`factorial` by its argument.

The evaluation runs in a worker process (`app.workers`), so even a bound missed here
cannot freeze the server, and TOOL_TIMEOUT kills it.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from strands import tool
from strands.types.tools import ToolContext

from app.plugins import services

MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 1024  # about 308 decimal digits, the range of a float
MAX_FACTORIAL = 170  # the largest whose result is in that range
# round(x, n) for |n| beyond this gives the same result as at it (|x| < 10**309, and a
# float has 17 significant digits), so clamping keeps the answer and bounds the work.
MAX_ROUND_DIGITS = 400

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


def _whole(name: str, value: Number) -> int:
    if isinstance(value, int):
        return value
    if value.is_integer():
        return int(value)
    raise CalculationError(f"{name} needs a whole number")


def _power(base: Number, exponent: Number) -> Number:
    if base == 0 and exponent < 0:
        raise CalculationError("division by zero")
    # Estimate the size of the result before computing it. |base| <= 1 cannot grow, and an
    # integer exponent of at most 1024 bits costs at most ~1024 squarings of small numbers.
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


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    digits = _whole("round's second argument", ndigits)
    return round(x, max(-MAX_ROUND_DIGITS, min(MAX_ROUND_DIGITS, digits)))


def _factorial(n: Number) -> Number:
    # Compare before converting: float() of a 1024-bit integer overflows.
    if n > MAX_FACTORIAL:
        raise CalculationError(f"factorial is limited to {MAX_FACTORIAL}")
    if n < 0 or not (isinstance(n, int) or n.is_integer()):
        raise CalculationError("factorial needs a whole number that is not negative")
    return math.factorial(int(n))


def _log(x: Number, base: Number = math.e) -> Number:
    if x <= 0 or base <= 0 or base == 1:
        raise CalculationError("log needs a positive number (and a positive base other than 1)")
    return math.log(x, base)


def _log10(x: Number) -> Number:
    return _log(x, 10)


def _log2(x: Number) -> Number:
    return _log(x, 2)


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
_MANY = MAX_EXPRESSION_CHARS  # more arguments than an expression can hold
# name: (function, fewest arguments, most arguments)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (_sqrt, 1, 1),
    "cbrt": (math.cbrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "factorial": (_factorial, 1, 1),
    "log": (_log, 1, 2),
    "ln": (_log, 1, 1),
    "log10": (_log10, 1, 1),
    "log2": (_log2, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "atan2": (math.atan2, 2, 2),
    "hypot": (math.hypot, 1, _MANY),
    "degrees": (math.degrees, 1, 1),
    "radians": (math.radians, 1, 1),
    "min": (lambda *args: min(args), 1, _MANY),
    "max": (lambda *args: max(args), 1, _MANY),
}


def _arity(name: str, fewest: int, most: int) -> str:
    if fewest == most:
        return f"{name} takes {fewest} number{'s' if fewest > 1 else ''}"
    if most == _MANY:
        return f"{name} takes at least {fewest} number{'s' if fewest > 1 else ''}"
    return f"{name} takes {fewest} to {most} numbers"


def _call(name: str, args: list[Number]) -> Number:
    fn, fewest, most = _FUNCTIONS[name]
    if not fewest <= len(args) <= most:
        raise CalculationError(f"{_arity(name, fewest, most)}, not {len(args)}")
    try:
        return fn(*args)
    except CalculationError:
        raise
    except OverflowError:
        raise CalculationError(f"the numbers are too large for {name}") from None
    except ValueError:  # math's "math domain error"
        shown = ", ".join(format_number(a) for a in args)
        raise CalculationError(f"{name}({shown}) is not defined") from None


def _eval(node: ast.AST) -> Number:
    # Not bool, though it is an int: True + True is not arithmetic anyone asked for.
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _check(_BINARY[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in _FUNCTIONS:
            raise CalculationError(
                f"unknown function {node.func.id!r}; known: {', '.join(sorted(_FUNCTIONS))}"
            )
        return _check(_call(node.func.id, [_eval(arg) for arg in node.args]))
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


def calculate(expression: str) -> str:
    """`evaluate` and `format_number`: what runs in the worker process."""
    return format_number(evaluate(expression))


@tool(context=True)
async def calculator(expression: str, tool_context: ToolContext) -> str:
    """Evaluate an arithmetic expression and return the result.

    Supports + - * / // % ** (or ^), parentheses, pi, e, and the functions sqrt, cbrt,
    abs, round, floor, ceil, factorial, log (natural, or log(x, base)), log10, log2,
    exp, sin, cos, tan, asin, acos, atan, atan2, hypot, degrees, radians, min, max.

    Args:
        expression: The expression, for example "12 * 7" or "sqrt(81)".
    """
    return await services(tool_context).workers.run(calculate, expression)
