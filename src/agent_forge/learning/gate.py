"""The promotion gate: measure the deployed version and the candidate the same way, then decide.

`measure(path, heldout, cells, settings)` scores the agent saved at `path` on
* the held-out set: fresh test-split tasks of the logged (domain, level) distribution
  (`distribution.heldout_tasks`), answered greedily as the agent answers (`evaluate_agent`, generation path),
  weighted by each cell's share of the log;
* the full suite: the trajectory's measurement (`evaluation.trajectory.measure_agent`: every domain, levels
  1-10, test split, the fast path) with `suite_items` tasks per cell; its `domain_mean` is the suite number.

`decide(before, after, settings)` promotes only if held-out accuracy rose by more than `min_heldout_gain` and
the suite's domain mean fell by at most `max_suite_drop` points; otherwise the reason names the failed rule.
`canary(path, ...)` scores the drift watch's canary set (`interactions.canary_tasks`) the same way the server
does, for the `CanaryRun` the learner writes at a promotion.

Exercise: `pytest tests/learning/test_deployment.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config.report import ReportConfig
from ..evaluation import evaluate_agent
from ..evaluation.trajectory import measure_agent
from ..interactions import canary_tasks, score
from ..inference import answer
from ..models import load_agent
from ..tasks import Task
from .distribution import heldout_accuracy
from .settings import LearnSettings


def measure(path: Path, heldout: Sequence[Task], cells: dict[str, float], settings: LearnSettings) -> dict:
    suite = measure_agent(Path(path), ReportConfig(items_per_level=settings.suite_items), settings.seed)["suite"]
    agent = load_agent(path)
    report = evaluate_agent(agent, list(heldout), method="generate", think=False)
    accuracy, by_cell = heldout_accuracy(heldout, [s for *_, s in report.items], cells)
    return {"heldout": accuracy, "heldout_by_cell": by_cell, "heldout_n": len(heldout),
            "suite": suite["domain_mean"], "suite_by_domain": suite["by_domain"], "suite_n": suite["n"]}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    heldout_gain: float
    suite_change: float


def decide(before: dict, after: dict, settings: LearnSettings) -> Decision:
    gain = round(after["heldout"] - before["heldout"], 2)
    change = round(after["suite"] - before["suite"], 2)
    failed = []
    if not gain > settings.min_heldout_gain:
        failed.append(f"held-out accuracy {before['heldout']:.1f} -> {after['heldout']:.1f} "
                      f"({gain:+.1f} points) did not improve by more than {settings.min_heldout_gain:g}")
    if change < -settings.max_suite_drop:
        failed.append(f"the full suite fell {before['suite']:.2f} -> {after['suite']:.2f} ({change:+.2f} points), "
                      f"more than {settings.max_suite_drop:g}")
    if failed:
        return Decision(False, "; ".join(failed), gain, change)
    return Decision(True, f"held-out {before['heldout']:.1f} -> {after['heldout']:.1f} ({gain:+.1f}), suite "
                          f"{before['suite']:.2f} -> {after['suite']:.2f} ({change:+.2f})", gain, change)


def canary(path: Path, per_domain: int, facts_world: int | None, max_tokens: int = 48) -> tuple[float, dict, int]:
    """(accuracy %, per domain, n) of the canary set answered greedily by the agent at `path`."""
    tasks = canary_tasks(per_domain, facts_world)
    agent = load_agent(path)
    replies = answer(agent, [t.prompt for t in tasks], max_new_tokens=max_tokens, temperature=0.0, think=False)
    accuracy, by_domain = score(tasks, [r.text for r in replies])
    return accuracy, by_domain, len(tasks)
