"""Arithmetic tasks: column addition, subtraction and multiplication, answers written digits reversed.

Answers are the decimal result written least-significant digit first (132 -> "231"), and every prompt says
so ("(digits reversed)"), because a small left-to-right transformer can produce carries in that order.
Levels 1-2 add 2- and 3-digit numbers whose columns never carry; levels 3-4 are the same additions with
carries (the skill a shared base trained on levels 1-2 lacks); later levels add borrows, more digits, more
addends and multiplication. Levels 1-2 hold to one operation on purpose. In a trial (0.86M-parameter char
Llama, 900 steps at batch 64 on levels 1-2 of all four domains) a base trained on an earlier layout
(level 1: 1-2 digit additions, level 2: no-borrow subtraction) reached 37% / 5% on test levels 1 / 2; with
levels 1-2 as below it reached 90% / 48% (0% on levels 3-4), and a 350-step specialist fine-tune from it
reached 100 / 98 / 100 / 98% on levels 1-4.
Exercise it with:

    python -c "import random; from agent_forge.tasks.arithmetic import ArithmeticDomain as D; print(D().sample(3, random.Random(0)))"
"""

from __future__ import annotations

import random

from .base import Domain
from .fastrand import below, between

SUFFIX = " (digits reversed)"


def reversed_digits(value: int) -> str:
    """The canonical answer layout: decimal digits, least significant first."""
    return str(value)[::-1]


def _number(rng: random.Random, width: int) -> int:
    """A uniformly drawn number with exactly `width` digits (0-9 for width 1)."""
    if width == 1:
        return below(rng, 10)
    return between(rng, 10 ** (width - 1), 10**width - 1)


def _column_digits(number: int) -> list[int]:
    return [int(ch) for ch in reversed(str(number))]


def _add_steps(terms: list[int]) -> tuple[list[str], int]:
    """Schoolbook column addition from the ones column: one rationale step per column, and the op count.

    The count (`work`) is one per digit added into a column beyond the first, plus one per carry.
    """
    columns = max(len(str(t)) for t in terms)
    digits = [_column_digits(t) for t in terms]
    carry, steps, work = 0, [], 0
    for col in range(columns):
        present = [d[col] for d in digits if col < len(d)]
        parts = [str(x) for x in present] + ([str(carry)] if carry else [])
        total = sum(present) + carry
        work += len(parts) - 1
        steps.append(f"{'+'.join(parts)}={total}")
        carry = total // 10
        work += 1 if carry else 0
    if carry:
        steps.append(str(carry))
    return steps, work


def _sub_steps(top: int, bottom: int) -> tuple[list[str], int]:
    """Column subtraction (top >= bottom) from the ones column, borrowing where a column runs short."""
    top_digits, bottom_digits = _column_digits(top), _column_digits(bottom)
    borrow, steps, work = 0, [], 0
    for col, upper in enumerate(top_digits):
        lower = bottom_digits[col] if col < len(bottom_digits) else 0
        upper -= borrow
        borrow = 1 if upper < lower else 0
        upper += 10 * borrow
        steps.append(f"{upper}-{lower}={upper - lower}")
        work += 1 + borrow
    return steps, work


def _mul_single_steps(number: int, digit: int) -> tuple[list[str], int]:
    """Multiplying by one digit from the ones column: digit product plus the carry, per column."""
    carry, steps, work = 0, [], 0
    for d in _column_digits(number):
        total = d * digit + carry
        steps.append(f"{d}*{digit}+{carry}={total}" if carry else f"{d}*{digit}={total}")
        work += 1 + (1 if carry else 0)
        carry = total // 10
    if carry:
        steps.append(str(carry))
    return steps, work


def _carry_count(terms: list[int]) -> int:
    columns = max(len(str(t)) for t in terms)
    digits = [_column_digits(t) for t in terms]
    carry = count = 0
    for col in range(columns):
        carry = (sum(d[col] for d in digits if col < len(d)) + carry) // 10
        count += 1 if carry else 0
    return count


def _borrow_count(top: int, bottom: int) -> int:
    return sum(1 for step in _sub_steps(top, bottom)[0] if int(step.split("-")[0]) >= 10)


def _no_carry_pair(rng: random.Random, width: int) -> tuple[int, int]:
    """Two numbers of `width` digits whose every column sums to at most 9."""
    a = b = 0
    for col in range(width):
        lowest = 1 if (col == width - 1 and width > 1) else 0
        x = between(rng, lowest, 9 - lowest)
        y = between(rng, lowest, 9 - x)
        a, b = a + x * 10**col, b + y * 10**col
    return a, b


def _with_carry_pair(rng: random.Random, width: int) -> tuple[int, int]:
    while True:
        a, b = _number(rng, width), _number(rng, width)
        if _carry_count([a, b]):
            return a, b


def _with_borrow_pair(rng: random.Random, width: int) -> tuple[int, int]:
    while True:
        a, b = _number(rng, width), _number(rng, between(rng, width - 2, width))
        if a > b and _borrow_count(a, b):
            return a, b


class ArithmeticDomain(Domain):
    name = "arithmetic"

    _DESCRIPTIONS = {
        1: "add two 2-digit numbers, no column carries",
        2: "add two 3-digit numbers, no column carries",
        3: "add two 2-digit numbers with at least one carry",
        4: "add two 3-digit numbers with at least one carry",
        5: "subtract a 3-5 digit number from a 5-digit number with at least one borrow",
        6: "multiply a 5-digit number by one digit (2-9)",
        7: "add or subtract two 6-7 digit numbers",
        8: "add three 4-digit numbers",
        9: "multiply a 4-digit number by a 2-digit number",
        10: "multiply two 3-digit numbers",
    }

    def describe_level(self, level: int) -> str:
        return f"level {level}: {self._DESCRIPTIONS[level]}; answer digits reversed"

    def draw(self, level, rng, world_seed):
        op, operands = self._operands(level, rng)
        # + and * are commutative: every order of the same operands is one instance, so they share a split.
        canonical = sorted(operands) if op in "+*" else operands
        key = f"{_OP_NAMES[op]}:{','.join(map(str, canonical))}"
        return key, lambda: _RENDER[op](operands)

    @staticmethod
    def _operands(level: int, rng: random.Random) -> tuple[str, list[int]]:
        if level == 1:
            return "+", list(_no_carry_pair(rng, 2))
        if level == 2:
            return "+", list(_no_carry_pair(rng, 3))
        if level == 3:
            return "+", list(_with_carry_pair(rng, 2))
        if level == 4:
            return "+", list(_with_carry_pair(rng, 3))
        if level == 5:
            return "-", list(_with_borrow_pair(rng, 5))
        if level == 6:
            return "*", [_number(rng, 5), between(rng, 2, 9)]
        if level == 7:
            a, b = _number(rng, between(rng, 6, 7)), _number(rng, between(rng, 6, 7))
            return ("+", [a, b]) if rng.random() < 0.5 else ("-", [max(a, b), min(a, b)])
        if level == 8:
            return "+", [_number(rng, 4) for _ in range(3)]
        if level == 9:
            return "*", [_number(rng, 4), _number(rng, 2)]
        return "*", [_number(rng, 3), _number(rng, 3)]


def _addition(terms: list[int]):
    value = sum(terms)
    steps, work = _add_steps(terms)
    meta = {"op": "+", "operands": list(terms), "value": value, "carries": _carry_count(terms), "work": work}
    return "+".join(str(t) for t in terms) + SUFFIX, reversed_digits(value), "; ".join(steps), meta


def _subtraction(operands: list[int]):
    top, bottom = operands
    value = top - bottom
    steps, work = _sub_steps(top, bottom)
    meta = {"op": "-", "operands": [top, bottom], "value": value, "borrows": _borrow_count(top, bottom), "work": work}
    return f"{top}-{bottom}{SUFFIX}", reversed_digits(value), "; ".join(steps), meta


def _multiplication(operands: list[int]):
    a, b = operands
    value = a * b
    if b < 10:
        steps, work = _mul_single_steps(a, b)
    else:
        # One partial product per digit of the multiplier, then their column sum.
        steps, work, partials = [], 0, []
        for place, digit in enumerate(_column_digits(b)):
            partial = a * digit * 10**place
            partials.append(partial)
            steps.append(f"{a}*{digit * 10**place}={partial}")
            work += _mul_single_steps(a, digit)[1]
        steps.append("+".join(str(p) for p in partials) + f"={value}")
        work += _add_steps(partials)[1]
    meta = {"op": "*", "operands": [a, b], "value": value, "work": work}
    return f"{a}*{b}{SUFFIX}", reversed_digits(value), "; ".join(steps), meta


_OP_NAMES = {"+": "add", "-": "sub", "*": "mul"}
_RENDER = {"+": _addition, "-": _subtraction, "*": _multiplication}
