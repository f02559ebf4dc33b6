"""Tool-use traces: what the agent should write for a task, call by call, with the responses the runtime gives.

A trace is a list of segments `(text, written by the model)`. The responses are produced by executing the call
through the same `ToolRegistry` the agent answers with, so training sees exactly what answering will show.

* Arithmetic: one calculator call with the task's expression, then the result's digits reversed (the domain's
  answer layout: the model still writes the answer, the tool only computes).
* Facts: a small program over memory searches. Each step resolves the innermost `the <relation> of <name>`
  (or, once every name is plain, the attribute asked) with one search, and the model rewrites the question with
  the fact it read (`where does the boss of keta live?` -> `where does goran live?`) before the next call, so
  every step only copies and looks things up; comparisons end with the model comparing the two values. A search
  asks for the opening of the sentence it expects (`the boss of keta is`, `goran lives in`), which the store
  ranks first as an exact phrase, so one passage per search is enough (`tools.memory_k`).

A trace whose needed fact is missing from a search's results is not trainable (`None`): the model could not
have read its answer there.

Exercise: `python -m agent_forge.stages.tools.traces` prints a trace per facts level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ...tasks import Task
from ...tasks.arithmetic import SUFFIX
from ...tasks.knowledge import KnowledgeBase
from ...tools import ToolCall, render_call, render_response

Segment = tuple[str, bool]
RunTool = Callable[[str, dict], str]  # (tool name, arguments) -> the response text the model is shown

_HOP = re.compile(r"the (friend|boss) of (?!the )([a-z]+)")
_ATTRIBUTE_QUESTIONS = {
    re.compile(r"^where does ([a-z]+) live\?$"): "city",
    re.compile(r"^what color does ([a-z]+) like\?$"): "color",
    re.compile(r"^what pet does ([a-z]+) have\?$"): "pet",
    re.compile(r"^what job does ([a-z]+) have\?$"): "job",
    re.compile(r"^how old is ([a-z]+)\?$"): "age",
}
_REGION_OF_PERSON = re.compile(r"^in which region does ([a-z]+) live\?$")
_REGION_OF_TOWN = re.compile(r"^in which region is ([a-z]+)\?$")
_WHO = re.compile(r"^who is ([a-z]+)\?$")
_OLDER = re.compile(r"^is ([a-z0-9]+) older than ([a-z0-9]+)\?$")
_SAME_CITY = re.compile(r"^do ([a-z]+) and ([a-z]+) live in the same city\?$")


@dataclass(frozen=True)
class Trace:
    task: Task
    segments: tuple[Segment, ...]

    @property
    def calls(self) -> int:
        return sum(1 for text, by_model in self.segments if not by_model)

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)


def no_call_trace(task: Task) -> Trace:
    """The answer alone: what the agent writes where no tool helps."""
    return Trace(task, ((task.answer, True),))


def arithmetic_trace(task: Task, run_tool: RunTool) -> Trace | None:
    expression = task.prompt[: -len(SUFFIX)] if task.prompt.endswith(SUFFIX) else task.prompt
    arguments = {"expression": expression}
    result = run_tool("calculator", arguments)
    if not result.lstrip("-").isdigit() or result.lstrip("-")[::-1] != task.answer.lstrip("-"):
        return None
    return Trace(task, ((render_call("calculator", arguments), True), (_response(result), False), (task.answer, True)))


def _response(result: str) -> str:
    # the call's closing tag is the model's (generation stops on it); the runtime appends only the response
    return render_response(result)


@dataclass
class _Step:
    query: str
    needed: str  # the statement the model must read in the response
    after: str | None  # the rewritten question (None: the step's response settles the answer)


def _lookup(kb: KnowledgeBase, name: str, attribute: str, after: str | None) -> _Step:
    # the search asks for the sentence it expects to find, as that sentence starts ("the boss of keta is"):
    # a phrase the store ranks first, where the question's own words would match other sentences as well
    return _Step(kb.statement_opening(name, attribute), kb.statement(name, attribute), after)


def facts_program(question: str, kb: KnowledgeBase) -> tuple[list[_Step], str] | None:
    """The search steps that answer `question` from the knowledge base, and the answer; None if not a known form."""
    steps: list[_Step] = []
    q = question
    for _ in range(16):
        hop = _HOP.search(q)
        if hop:
            relation, name = hop.group(1), hop.group(2)
            if name not in kb.people:
                return None
            value = getattr(kb.people[name], relation)
            q = q[: hop.start()] + value + q[hop.end():]
            steps.append(_lookup(kb, name, relation, q))
            continue
        if m := _WHO.match(q):
            return _settle(steps, m.group(1))
        if m := _REGION_OF_PERSON.match(q):
            town = kb.people[m.group(1)].city if m.group(1) in kb.people else None
            if town is None:
                return None
            q = f"in which region is {town}?"
            steps.append(_lookup(kb, m.group(1), "city", q))
            continue
        if m := _REGION_OF_TOWN.match(q):
            town = m.group(1)
            if town not in kb.towns:
                return None
            steps.append(_lookup(kb, town, "region", None))
            return _settle(steps, kb.towns[town])
        for pattern, attribute in _ATTRIBUTE_QUESTIONS.items():
            if (m := pattern.match(q)) and m.group(1) in kb.people:
                steps.append(_lookup(kb, m.group(1), attribute, None))
                return _settle(steps, str(getattr(kb.people[m.group(1)], attribute)))
        if m := _OLDER.match(q):
            left, right = m.group(1), m.group(2)
            if not left.isdigit():
                if left not in kb.people:
                    return None
                age = str(kb.people[left].age)
                q = f"is {age} older than {right}?"
                steps.append(_lookup(kb, left, "age", q))
                continue
            if right not in kb.people:
                return None
            steps.append(_lookup(kb, right, "age", None))
            return _settle(steps, "yes" if int(left) > kb.people[right].age else "no")
        if m := _SAME_CITY.match(q):
            left, right = m.group(1), m.group(2)
            if left in kb.people:
                town = kb.people[left].city
                q = f"do {town} and {right} live in the same city?"
                steps.append(_lookup(kb, left, "city", q))
                continue
            if right not in kb.people:
                return None
            steps.append(_lookup(kb, right, "city", None))
            return _settle(steps, "yes" if left == kb.people[right].city else "no")
        return None
    return None


def _settle(steps: list[_Step], answer: str) -> tuple[list[_Step], str]:
    if steps:
        steps[-1].after = None  # the last response settles the answer: no rewritten question after it
    return steps, answer


def facts_trace(task: Task, kb: KnowledgeBase, run_tool: RunTool) -> Trace | None:
    program = facts_program(task.prompt, kb)
    if program is None:
        return None
    steps, answer = program
    if answer != task.answer or not steps:
        return None
    segments: list[Segment] = []
    for step in steps:
        arguments = {"query": step.query}
        result = run_tool("memory_search", arguments)
        if step.needed not in result.split(" | "):
            return None
        segments += [(render_call("memory_search", arguments), True), (_response(result), False)]
        if step.after is not None:
            segments.append((step.after, True))
    segments.append((answer, True))
    return Trace(task, tuple(segments))


def registry_runner(registry) -> RunTool:
    """A memoised `RunTool` over a `tools.ToolRegistry` (the same query always gets the same response)."""
    cache: dict[tuple[str, str], str] = {}

    def run(name: str, arguments: dict) -> str:
        key = (name, repr(sorted(arguments.items())))
        if key not in cache:
            cache[key] = registry.execute(ToolCall(name, dict(arguments)))
        return cache[key]

    return run


if __name__ == "__main__":
    import random

    from ...tasks import DOMAINS

    kb = KnowledgeBase.build(0)
    for level in range(1, 11):
        task = DOMAINS["facts"].sample(level, random.Random(level))
        program = facts_program(task.prompt, kb)
        print(level, task.prompt, "->", task.answer)
        for step in (program[0] if program else []):
            print("   search:", step.query, "| read:", step.needed, "| then:", step.after)
