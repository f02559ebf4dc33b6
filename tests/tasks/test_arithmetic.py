"""Arithmetic answers are recomputed from the prompt text; carries appear exactly where the levels say."""

import re

import pytest

from agent_forge.tasks import LEVELS, make_tasks

PROMPT = re.compile(r"^(\d+)([+\-*])(\d+)(?:\+(\d+))? \(digits reversed\)$")


def _evaluate(prompt: str) -> int:
    match = PROMPT.match(prompt)
    assert match, prompt
    a, op, b, c = match.groups()
    if op == "+":
        return int(a) + int(b) + (int(c) if c else 0)
    assert c is None
    return int(a) - int(b) if op == "-" else int(a) * int(b)


def _column_carries(numbers: list[int]) -> int:
    """Carries of column addition, counted independently of the package: pad and add digit by digit."""
    width = max(len(str(n)) for n in numbers)
    padded = [str(n).zfill(width) for n in numbers]
    carry = count = 0
    for col in range(width - 1, -1, -1):
        carry = (sum(int(p[col]) for p in padded) + carry) // 10
        count += carry > 0
    return count


def _column_borrows(top: int, bottom: int) -> int:
    width = len(str(top))
    a, b = str(top).zfill(width), str(bottom).zfill(width)
    borrow = count = 0
    for col in range(width - 1, -1, -1):
        diff = int(a[col]) - int(b[col]) - borrow
        borrow = 1 if diff < 0 else 0
        count += borrow
    return count


@pytest.mark.parametrize("level", LEVELS)
def test_answers_are_the_result_written_least_significant_digit_first(level):
    for task in make_tasks("arithmetic", level, "train", 200, seed=level):
        value = _evaluate(task.prompt)
        assert value >= 0
        assert task.answer == str(value)[::-1]
        assert int(task.answer[::-1]) == task.meta["value"] == value
        assert "digits reversed" in task.prompt


def test_easy_levels_never_carry_and_skill_levels_always_do():
    for level, width in ((1, 2), (2, 3)):
        for task in make_tasks("arithmetic", level, "train", 300, seed=0):
            a, b = task.meta["operands"]
            assert task.meta["op"] == "+" and len(str(a)) == len(str(b)) == width
            assert _column_carries([a, b]) == 0, task.prompt
    for level, width in ((3, 2), (4, 3)):
        for task in make_tasks("arithmetic", level, "train", 300, seed=0):
            a, b = task.meta["operands"]
            assert task.meta["op"] == "+" and len(str(a)) == len(str(b)) == width
            assert _column_carries([a, b]) >= 1, task.prompt
    for task in make_tasks("arithmetic", 5, "train", 100, seed=0):
        assert _column_borrows(*task.meta["operands"]) >= 1


def test_commutative_orders_are_one_instance():
    tasks = make_tasks("arithmetic", 3, "train", 500, seed=0)
    for task in tasks:
        a, b = task.meta["operands"]
        assert task.meta["key"] == f"add:{min(a, b)},{max(a, b)}"


def test_rationale_walks_the_columns_from_the_ones_place():
    task = next(t for t in make_tasks("arithmetic", 4, "train", 50, 0) if t.meta["value"] >= 1000)
    a, b = task.meta["operands"]
    steps = task.rationale.split("; ")
    assert steps[0] == f"{a % 10}+{b % 10}={a % 10 + b % 10}"
    assert steps[-1] == "1"  # the final carry
    for task in make_tasks("arithmetic", 10, "train", 20, 0):
        assert task.rationale.endswith(f"={task.meta['value']}")
