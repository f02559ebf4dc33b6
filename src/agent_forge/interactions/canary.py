"""The drift watch's canary: a fixed set of held-out tasks, how it is scored, and when it counts as falling.

`canary_tasks(per_domain, facts_world)` is always the same list (test split, seed `CANARY_SEED`, levels 1-3
round-robin per domain; `facts` only when the knowledge base world is known), so runs are comparable across
time and versions. `score(tasks, outputs)` is the verifier's accuracy (percent, overall and per domain) of
the final answers (text after the last tool response). `assess(previous, accuracy)`: a run is *falling* when
its accuracy is more than `tolerance` points below the best of the `window` runs before it (any version), so
a promotion that loses accuracy, or a served agent whose answers change under it (tools, memory), shows up.

The server evaluates the canary through its own engine (the agent as it answers requests) on a schedule and
whenever it serves a version the log has no canary run for (a promotion); a learner evaluates the same
`canary_tasks` before it promotes and writes its run to the same log (`InteractionLog.add_canary`).

Exercise: `pytest tests/interactions/test_canary.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..tasks import Task, make_tasks, verify
from ..tools import final_answer

CANARY_SEED = 7919  # fixed: the canary is the same set of tasks on every machine and in every run
CANARY_DOMAINS = ("arithmetic", "strings", "logic")
CANARY_LEVELS = (1, 2, 3)


@dataclass(frozen=True)
class CanaryPolicy:
    per_domain: int = 6  # tasks per domain
    every_s: float = 3600.0  # seconds between scheduled runs (0: only at start and on a new version)
    tolerance: float = 5.0  # points below the reference that count as falling
    window: int = 5  # previous runs the reference is the best of
    max_tokens: int = 48


def canary_tasks(per_domain: int = 6, facts_world: int | None = None) -> list[Task]:
    domains = CANARY_DOMAINS + (("facts",) if facts_world is not None else ())
    tasks = []
    for domain in domains:
        counts = [per_domain // len(CANARY_LEVELS) + (1 if i < per_domain % len(CANARY_LEVELS) else 0)
                  for i in range(len(CANARY_LEVELS))]
        for level, n in zip(CANARY_LEVELS, counts):
            if n:
                tasks += make_tasks(domain, level, "test", n, CANARY_SEED,
                                    world_seed=facts_world if domain == "facts" else None)
    return tasks


def score(tasks: Sequence[Task], outputs: Sequence[str]) -> tuple[float, dict[str, float]]:
    """(accuracy in percent, accuracy per domain in percent) of `outputs` (one per task)."""
    per: dict[str, list[float]] = {}
    for task, output in zip(tasks, outputs, strict=True):
        per.setdefault(task.domain, []).append(verify(task, final_answer(output or "")))
    everything = [s for scores in per.values() for s in scores]
    accuracy = 100.0 * sum(everything) / len(everything) if everything else 0.0
    return accuracy, {d: 100.0 * sum(s) / len(s) for d, s in per.items()}


def assess(previous: Sequence[dict[str, Any]], accuracy: float, policy: CanaryPolicy = CanaryPolicy()
           ) -> tuple[float | None, bool]:
    """(reference accuracy, falling) of a new run given the earlier runs (oldest first, with `accuracy`)."""
    window = [r["accuracy"] for r in list(previous)[-policy.window:] if r.get("accuracy") is not None]
    if not window:
        return None, False
    reference = max(window)
    return reference, accuracy < reference - policy.tolerance
