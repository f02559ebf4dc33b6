"""Recognising a served prompt as a task of a known domain, so that its answer can be verified automatically.

`recognise(prompt, facts_world=None) -> Task | None` parses the prompt with the grammar its domain writes
(`tasks.arithmetic`, `tasks.strings`, `tasks.logic`, `tasks.facts`) and computes the reference answer from the
prompt alone: the sum/difference/product, the nested string calls, the max/min/sort/pattern/program trace. A
`facts` question is answered from the knowledge base world `facts_world` (the seed the agent was trained on);
without a world, or for a name that world does not have, a fact question is not recognised. Anything that does
not parse completely is not recognised: an answer is only ever marked verified against a reference that is
certainly right. The returned `Task` has `level=0` (the level is not recoverable from every prompt) and the
`meta["kind"]` the verifier's number rules look at.

Exercise: `pytest tests/interactions/test_recognise.py` (every generated task of every level is recognised and
gets its own reference answer back).
"""

from __future__ import annotations

import re
from typing import Callable

from ..tasks import KnowledgeBase, Task, verify
from ..tasks.arithmetic import SUFFIX, reversed_digits
from ..tasks.facts import _COMPARISONS, _QUESTIONS  # the question grammar itself, so the two cannot drift apart
from ..tasks.knowledge import RELATIONS
from ..tasks.strings import LETTERS, OPS

MAX_PROMPT_CHARS = 2000  # longer prompts are not tasks of these domains (and parsing them costs time)


def recognise(prompt: str, facts_world: int | None = None) -> Task | None:
    """The task `prompt` states, with its reference answer, or None when no domain's grammar parses it."""
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        return None
    text = prompt.strip()
    for parse in _PARSERS:
        found = parse(text, facts_world)
        if found is not None:
            domain, answer, kind = found
            return Task(f"served-{domain}", domain, 0, text, answer, meta={"kind": kind} if kind else {})
    return None


def verify_answer(prompt: str, answer: str, facts_world: int | None = None) -> tuple[Task, float] | None:
    """(the recognised task, the verifier's score of `answer`) or None when the prompt is no known task."""
    task = recognise(prompt, facts_world)
    if task is None:
        return None
    return task, verify(task, answer)


# --------------------------------------------------------------------------------------------- arithmetic

_NUMBER = r"(?:0|[1-9][0-9]*)"
_ARITHMETIC = re.compile(rf"({_NUMBER}(?:[+\-*]{_NUMBER})+){re.escape(SUFFIX)}")


def _arithmetic(text: str, _world) -> tuple[str, str, str | None] | None:
    match = _ARITHMETIC.fullmatch(text)
    if match is None:
        return None
    expression = match.group(1)
    operators = set(re.findall(r"[+\-*]", expression))
    operands = [int(x) for x in re.split(r"[+\-*]", expression)]
    if operators == {"+"}:
        value = sum(operands)
    elif operators in ({"-"}, {"*"}) and len(operands) == 2:  # the domain writes one - or * between two numbers
        a, b = operands
        value = a - b if operators == {"-"} else a * b
        if value < 0:
            return None
    else:
        return None
    return "arithmetic", reversed_digits(value), None


# ------------------------------------------------------------------------------------------------ strings

_CALL_HEAD = re.compile(r"([a-z]+)\(")


def _strings(text: str, _world) -> tuple[str, str, str | None] | None:
    value = _eval_call(text)
    return ("strings", value, None) if value else None


def _eval_call(text: str) -> str | None:
    """Evaluate `op(inner[,arg])` innermost first; None unless the whole text is such a call."""
    match = _CALL_HEAD.match(text)
    if match is None or match.group(1) not in OPS or not text.endswith(")"):
        return None
    op = match.group(1)
    function, takes_argument = OPS[op]
    inner = text[match.end():-1]
    argument: object = None
    if takes_argument:
        inner, comma, raw = inner.rpartition(",")
        if not comma:
            return None
        if op == "shift":
            if not raw.isdigit():
                return None
            argument = int(raw)
        elif len(raw) == 1 and raw in LETTERS:
            argument = raw
        else:
            return None
    word = inner if re.fullmatch("[a-z]+", inner) else _eval_call(inner)
    return None if word is None else function(word, argument)


# -------------------------------------------------------------------------------------------------- logic

_EXTREME = re.compile(r"(max|min)((?: [0-9])+)")
_SORT = re.compile(r"sort((?: [0-9])+)")
_PATTERN = re.compile(r"next:((?: [a-z])+)")
_INIT = re.compile(r"([a-e])=([0-9])")
_STATEMENTS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"([a-e])=([0-9])"), "set"),
    (re.compile(r"([a-e])=([a-e])"), "copy"),
    (re.compile(r"swap ([a-e]) ([a-e])"), "swap"),
    (re.compile(r"([a-e])=(max|min)\(([a-e]),([a-e])\)"), "minmax"),
    (re.compile(r"if ([a-e])([<>])([a-e]): ([a-e])=([a-e])"), "if-copy"),
    (re.compile(r"if ([a-e])([<>])([a-e]): swap ([a-e]) ([a-e])"), "if-swap"),
]


def _logic(text: str, _world) -> tuple[str, str, str | None] | None:
    if match := _EXTREME.fullmatch(text):
        digits = [int(d) for d in match.group(2).split()]
        return "logic", str((max if match.group(1) == "max" else min)(digits)), match.group(1)
    if match := _SORT.fullmatch(text):
        return "logic", "".join(sorted(match.group(1).split())), "sort"
    if match := _PATTERN.fullmatch(text):
        return _pattern(match.group(1).split())
    return _trace(text)


def _pattern(items: list[str]) -> tuple[str, str, str | None] | None:
    for period in (2, 3):  # the domain's periods; the shortest that repeats exactly is the pattern
        unit = items[:period]
        if len(items) >= 2 * period and len(set(unit)) == period and all(
                x == unit[i % period] for i, x in enumerate(items)):
            return "logic", unit[len(items) % period], "pattern"
    return None


def _trace(text: str) -> tuple[str, str, str | None] | None:
    parts = [p.strip() for p in text.split(";")]
    if len(parts) < 3 or not re.fullmatch(r"[a-e]\?", parts[-1]):
        return None
    values: dict[str, int] = {}
    for assignment in parts[0].split(" "):
        match = _INIT.fullmatch(assignment)
        if match is None or match.group(1) in values:
            return None
        values[match.group(1)] = int(match.group(2))
    for statement in parts[1:-1]:
        if not _execute(statement, values):
            return None
    query = parts[-1][0]
    return ("logic", str(values[query]), "trace") if query in values else None


def _execute(statement: str, values: dict[str, int]) -> bool:
    """Run one statement of a traced program on `values`; False if it does not parse or names no variable."""
    for pattern, kind in _STATEMENTS:
        match = pattern.fullmatch(statement)
        if match is None:
            continue
        g = match.groups()
        names = [x for x in g if len(x) == 1 and x in "abcde"]
        if any(n not in values for n in names):
            return False
        if kind == "set":
            values[g[0]] = int(g[1])
        elif kind == "copy":
            values[g[0]] = values[g[1]]
        elif kind == "swap":
            values[g[0]], values[g[1]] = values[g[1]], values[g[0]]
        elif kind == "minmax":
            values[g[0]] = (max if g[1] == "max" else min)(values[g[2]], values[g[3]])
        else:
            x, cmp, y, v, w = g
            if values[x] > values[y] if cmp == ">" else values[x] < values[y]:
                if kind == "if-copy":
                    values[v] = values[w]
                else:
                    values[v], values[w] = values[w], values[v]
        return True
    return False


# -------------------------------------------------------------------------------------------------- facts

_PHRASE = r"((?:the (?:" + "|".join(RELATIONS) + r") of )*[a-z]+)"


def _template(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{p\}", _PHRASE).replace(r"\{q\}", _PHRASE)
    return re.compile(pattern)


_PERSON_QUESTIONS = [(_template(t), attribute) for attribute, t in _QUESTIONS.items()]
_COMPARISON_QUESTIONS = [(_template(t), attribute) for attribute, t in _COMPARISONS.items()]
_TOWN_QUESTION = re.compile(r"in which region is ([a-z]+)\?")


def _holder(kb: KnowledgeBase, phrase: str) -> str | None:
    """The person `the boss of the friend of keta` names, or None for a name the world does not have."""
    relations = []
    while phrase.startswith("the "):
        relation, _, phrase = phrase[4:].partition(" of ")
        relations.append(relation)
    if phrase not in kb.people:
        return None
    return kb.follow(phrase, tuple(reversed(relations)))[-1]


def _facts(text: str, world: int | None) -> tuple[str, str, str | None] | None:
    if world is None or not text.endswith("?"):
        return None
    kb = KnowledgeBase.build(world)
    if match := _TOWN_QUESTION.fullmatch(text):
        town = match.group(1)
        return ("facts", kb.towns[town], "chain") if town in kb.towns else None
    for pattern, attribute in _COMPARISON_QUESTIONS:
        if match := pattern.fullmatch(text):
            holders = [_holder(kb, phrase) for phrase in match.groups()]
            if None in holders:
                return None
            left, right = (getattr(kb.people[h], attribute) for h in holders)
            yes = left > right if attribute == "age" else left == right
            return "facts", "yes" if yes else "no", "compare"
    for pattern, attribute in _PERSON_QUESTIONS:
        if match := pattern.fullmatch(text):
            holder = _holder(kb, match.group(1))
            return None if holder is None else ("facts", kb.attribute(holder, attribute), "chain")
    return None


_PARSERS: list[Callable[[str, int | None], tuple[str, str, str | None] | None]] = [
    _arithmetic, _strings, _logic, _facts,
]
