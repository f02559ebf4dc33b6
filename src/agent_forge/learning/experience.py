"""Logged experience -> what the learner trains on.

`collect(log, facts_world)` reads the interaction log (`InteractionLog.answered`, `all_feedback`) and sorts it:

* a *verified failure* (a recognised task answered wrong) gives a demonstration: its prompt with the reference
  answer `interactions.recognise` computed from the prompt; the task is also a prompt the policy-gradient cycles
  roll out (the verifier is the reward);
* a *verified success* is replay (its canonical reference, so formatting the verifier forgave is not rehearsed),
  and a prompt for the cycles;
* a *correction* from feedback is a demonstration, unless the verifier scored it wrong (never taught); a thumbs
  up on an answer no verifier checks makes that answer replay.

Prompts are deduplicated (the last word wins: a later verified answer or correction replaces an earlier one).
`Experience.tasks` are the recognised tasks, `cells` their (domain, level) placement (`distribution.place`).
The learner snapshots an `Experience` into its plan (`to_json`), so a resumed run learns from the same data.

Exercise: `pytest -m slow tests/learning/test_deployment.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..interactions import InteractionLog, recognise
from ..tasks import Task
from .distribution import logged_cells, place

Pair = tuple[str, str]


@dataclass
class Experience:
    tasks: list[Task] = field(default_factory=list)  # recognised logged tasks (reference answers)
    failures: list[Pair] = field(default_factory=list)  # (prompt, reference) of verified failures
    successes: list[Pair] = field(default_factory=list)  # (prompt, reference) of verified successes
    corrections: list[Pair] = field(default_factory=list)  # (prompt, correction) from feedback
    approved: list[Pair] = field(default_factory=list)  # (prompt, answer) rated up, no verifier
    cells: dict[str, int] = field(default_factory=dict)  # {"domain:level": logged tasks placed there}
    levels: dict[str, int] = field(default_factory=dict)  # prompt -> placed level (0: none)
    interactions: int = 0

    @property
    def demonstrations(self) -> list[Pair]:
        return self.failures + self.corrections

    @property
    def replay(self) -> list[Pair]:
        return self.successes + self.approved

    def summary(self) -> dict:
        return {"interactions": self.interactions, "tasks": len(self.tasks), "failures": len(self.failures),
                "successes": len(self.successes), "corrections": len(self.corrections),
                "approved": len(self.approved), "cells": self.cells}

    def to_json(self) -> dict:
        return {
            "tasks": [{"domain": t.domain, "prompt": t.prompt, "answer": t.answer, "meta": t.meta} for t in self.tasks],
            "failures": self.failures, "successes": self.successes, "corrections": self.corrections,
            "approved": self.approved, "cells": self.cells, "levels": self.levels, "interactions": self.interactions,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Experience":
        levels = data.get("levels", {})
        tasks = [Task(f"served-{t['domain']}", t["domain"], levels.get(t["prompt"], 0), t["prompt"], t["answer"],
                      meta=t.get("meta") or {}) for t in data["tasks"]]
        pairs = lambda key: [tuple(p) for p in data.get(key, [])]  # noqa: E731
        return cls(tasks, pairs("failures"), pairs("successes"), pairs("corrections"), pairs("approved"),
                   dict(data.get("cells", {})), dict(levels), int(data.get("interactions", 0)))


def collect(log: InteractionLog, facts_world: int | None = None) -> Experience:
    rows = log.answered()
    by_id = {r["response_id"]: r for r in rows}
    tasks: dict[str, Task] = {}
    outcome: dict[str, bool] = {}  # prompt -> verified success (latest answer)
    corrections: dict[str, str] = {}
    approved: dict[str, str] = {}
    for row in rows:
        if row["reference"] is None or row["verified"] is None or not row["prompt"]:
            continue
        task = recognise(row["prompt"], facts_world)
        if task is None:  # recognised when served (another facts world?), not now: no reference to trust
            continue
        tasks[task.prompt] = task
        outcome[task.prompt] = float(row["verified"]) >= 1.0
    for fb in log.all_feedback():
        row = by_id.get(fb["response_id"])
        if row is None or not row["prompt"]:
            continue
        prompt = row["prompt"].strip()
        correction = (fb["correction"] or "").strip()
        if correction and (fb["correction_verified"] is None or float(fb["correction_verified"]) >= 1.0):
            corrections[prompt] = correction
        elif fb["rating"] == 1 and row["verified"] is None and row["answer"]:
            approved[prompt] = row["answer"].strip()
        elif fb["rating"] == -1:
            approved.pop(prompt, None)
    levels = {p: place(t, facts_world) for p, t in tasks.items()}
    placed = [Task(t.task_id, t.domain, levels[p], t.prompt, t.answer, meta=t.meta) for p, t in tasks.items()]
    return Experience(
        tasks=placed,
        failures=[(p, tasks[p].answer) for p, ok in outcome.items() if not ok and p not in corrections],
        successes=[(p, tasks[p].answer) for p, ok in outcome.items() if ok],
        corrections=sorted(corrections.items()),
        approved=sorted((p, a) for p, a in approved.items() if p not in corrections),
        cells=logged_cells(placed, facts_world),
        levels=levels,
        interactions=len(rows),
    )
