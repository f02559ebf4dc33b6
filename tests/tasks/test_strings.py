"""String answers are recomputed by an independent interpreter of the nested-call prompts."""

import re

import pytest

from agent_forge.tasks import LEVELS, make_tasks

CALL = re.compile(r"^(\w+)\((.*)\)$")


def _interpret(expr: str) -> str:
    """Evaluate e.g. `reverse(shift(kwt,1))` with implementations written apart from the package."""
    match = CALL.match(expr)
    if not match:
        assert re.fullmatch(r"[a-z]+", expr), expr
        return expr
    name, inner = match.groups()
    arg = None
    if name in ("shift", "drop"):
        inner, arg = inner.rsplit(",", 1)
    value = _interpret(inner)
    if name == "reverse":
        return "".join(reversed(value))
    if name == "double":
        return "".join(c * 2 for c in value)
    if name == "shift":
        return "".join(chr((ord(c) - 97 + int(arg)) % 26 + 97) for c in value)
    if name == "sort":
        return "".join(sorted(value))
    if name == "dedup":
        return "".join(dict.fromkeys(value))
    if name == "drop":
        return "".join(c for c in value if c != arg)
    raise AssertionError(f"unknown call {name}")


def _calls(expr: str) -> list[str]:
    return re.findall(r"(\w+)\(", expr)


@pytest.mark.parametrize("level", LEVELS)
def test_answers_match_an_independent_interpreter(level):
    for task in make_tasks("strings", level, "train", 200, seed=level):
        assert task.answer == _interpret(task.prompt), task.prompt
        assert task.answer  # never an empty answer
        assert len(_calls(task.prompt)) == len(task.meta["ops"])


def test_easy_levels_never_shift_and_skill_levels_only_shift_by_one():
    for level in (1, 2):
        for task in make_tasks("strings", level, "train", 300, 0):
            assert set(_calls(task.prompt)) <= {"reverse", "double"}
    for level in (3, 4):
        for task in make_tasks("strings", level, "train", 300, 0):
            assert _calls(task.prompt) == ["shift"] and task.prompt.endswith(",1)")
            assert task.rationale == " ".join(f"{a}>{b}" for a, b in zip(task.meta["word"], task.answer))


def test_nested_levels_show_each_intermediate_result():
    for task in make_tasks("strings", 8, "train", 50, 0):
        steps = task.rationale.split("; ")
        assert [s.split(":")[0] for s in steps] == task.meta["ops"]
        assert steps[-1] == f"{task.meta['ops'][-1]}: {task.answer}"
        assert all(a != b for a, b in zip(task.meta["ops"], task.meta["ops"][1:]))  # no call repeats its inner one
