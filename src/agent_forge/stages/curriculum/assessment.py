"""Baseline assessment: how far up each domain's ten levels the entering model already gets.

For each domain, validation-split tasks are scored level by level with the fast teacher-forced exact match;
the frontier is the highest level answered at or above the threshold (0 when none is). Probing a domain stops
after `patience` consecutive levels below the threshold, since harder levels would fail as well. The profile
(accuracy per probed level, frontier) is what the curriculum starts from.

Exercise: `pytest tests/stages/curriculum/test_stage.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...evaluation import fast_exact_match, percent
from ...tasks import make_tasks


@dataclass
class Profile:
    """Accuracy (0-1, as the threshold) by domain and probed level, and the frontier level per domain.

    `to_dict` (the stage's metrics) gives the accuracies in percent, like every other metric.
    """

    accuracy: dict[str, dict[int, float]] = field(default_factory=dict)
    frontier: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "accuracy": {d: {str(k): percent(v) for k, v in lv.items()} for d, lv in self.accuracy.items()},
            "frontier": dict(self.frontier),
        }


def level_accuracy(model, tokenizer, domain: str, level: int, split: str, n: int, seed: int, skip: int = 0) -> float:
    """Greedy exact-match accuracy on `n` tasks of the (domain, level, split, seed) stream, after its first `skip`."""
    tasks = make_tasks(domain, level, split, skip + n, seed)[skip:]
    hits = fast_exact_match(model, tokenizer, tasks)
    return sum(hits) / max(1, len(hits))


def fresh_level_accuracy(model, tokenizer, domain: str, level: int, n: int, seed: int) -> float:
    """Accuracy on the `n` validation items that follow the `n` of `level_accuracy`'s check (same world).

    A mastery check repeated every few cycles on one fixed item set advances on the first noisy crossing of the
    threshold: at a true accuracy of 0.7, 48 items reach 0.8 about one check in twenty, so a level checked
    thirty times is "mastered" more often than not. Confirming on items the crossing did not see removes that
    selection bias. A split smaller than 2n repeats items (the facts world has few questions per level), and
    then the confirmation is no stricter than the check.
    """
    return level_accuracy(model, tokenizer, domain, level, "val", n, seed, skip=n)


def assess(model, tokenizer, domains: list[str], *, items_per_level: int, threshold: float, patience: int, seed: int) -> Profile:
    """Probe levels 1..10 of every domain on the validation split and find each frontier."""
    profile = Profile()
    for domain in domains:
        accuracy: dict[int, float] = {}
        misses = 0
        for level in range(1, 11):
            accuracy[level] = level_accuracy(model, tokenizer, domain, level, "val", items_per_level, seed)
            misses = 0 if accuracy[level] >= threshold else misses + 1
            if misses >= patience:
                break
        profile.accuracy[domain] = accuracy
        profile.frontier[domain] = max((lvl for lvl, acc in accuracy.items() if acc >= threshold), default=0)
    return profile
