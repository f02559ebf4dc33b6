"""A calculator over Python's `ast` with an allow-list: no `eval`, bounded in every dimension.

Allowed: integer and decimal literals (ASCII digits), `+ - * / // % **`, unary minus and plus, parentheses.
Everything else (names, calls, attributes, comparisons, unicode digits, `1e5`, `1_000`, strings) is refused.
Limits: expression length, literal digits, operand/result magnitude, exponent, nesting depth and wall time;
each violation raises `CalculatorError` (the registry turns it into a tool error for the model).
"""

from __future__ import annotations

import ast
import math
import operator
import time

MAX_CHARS = 256
MAX_LITERAL_DIGITS = 40
MAX_MAGNITUDE = 10**100  # operands and every intermediate result
MAX_EXPONENT = 1000
MAX_DEPTH = 64  # syntax-tree depth (parentheses and operator chains)
TIME_LIMIT_S = 0.05
_ALLOWED_CHARS = frozenset("0123456789.+-*/%() \t")


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot compute (the message is shown to the model)."""


_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


def _check(value):
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
            raise CalculatorError("result out of range")
    elif abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result out of range (more than 100 digits)")
    return value


def _power(base, exponent):
    if isinstance(exponent, float) and not exponent.is_integer():
        if base < 0:
            raise CalculatorError("fractional power of a negative number")
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    if abs(base) > 1 and exponent > 0:  # size of the result before computing it
        if exponent * math.log10(abs(base)) > 101:
            raise CalculatorError("result out of range (more than 100 digits)")
    try:
        return base**exponent
    except (OverflowError, ZeroDivisionError) as error:
        raise CalculatorError(str(error)) from None


def _depth(node: ast.AST) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(current))
    return deepest


def calculate(expression: str, *, time_limit_s: float = TIME_LIMIT_S) -> int | float:
    """The value of `expression`, or `CalculatorError`."""
    if not isinstance(expression, str):
        raise CalculatorError(f"expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_CHARS:
        raise CalculatorError(f"expression longer than {MAX_CHARS} characters")
    if not expression.strip():
        raise CalculatorError("empty expression")
    bad = next((c for c in expression if c not in _ALLOWED_CHARS), None)
    if bad is not None:
        raise CalculatorError(f"character {bad!r} is not allowed (digits, + - * / // % ** and parentheses only)")
    level = 0
    for char in expression:  # parentheses nesting, before the parser sees it
        level += (char == "(") - (char == ")")
        if level > MAX_DEPTH // 2:
            raise CalculatorError("expression nested too deeply")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise CalculatorError(f"not an arithmetic expression ({type(error).__name__})") from None
    if _depth(tree) > MAX_DEPTH:
        raise CalculatorError("expression nested too deeply")
    deadline = time.monotonic() + time_limit_s

    def value(node: ast.AST):
        if time.monotonic() > deadline:
            raise CalculatorError("time limit exceeded")
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            literal = node.value
            if isinstance(literal, int) and literal.bit_length() > MAX_LITERAL_DIGITS * 3.33:
                raise CalculatorError(f"number with more than {MAX_LITERAL_DIGITS} digits")
            return _check(literal)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow):
                return _check(_power(left, right))
            try:
                return _check(_BINARY[type(node.op)](left, right))
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
            except OverflowError:
                raise CalculatorError("result out of range") from None
        raise CalculatorError(f"{type(node).__name__} is not allowed")

    return value(tree)


def format_number(number: int | float) -> str:
    """Integers exactly; other floats with 12 significant digits (an integral float as an integer)."""
    if isinstance(number, float):
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return format(number, ".12g")
    return str(number)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly: numbers, + - * / // % **, unary minus and parentheses.

    Args:
        expression: The arithmetic expression to evaluate, for example "(12+30)*4".
    """
    return format_number(calculate(expression))
