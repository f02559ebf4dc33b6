"""Multi-agent scenarios: a solver and a critic, two instances of the same model, rewarded by the verifier.

The solver answers a task (its samples are ordinary rollouts). For each solver answer the critic instance is
asked whether that answer is right ("yes"/"no"); the verifier knows the truth, so the critic's verdicts are
rewarded for agreeing with it, and the solver's answers for being right. Both roles update the one shared
model: the solver learns the task, the critic learns to check answers (the self-verification that confidence
and expert dispatch build on later). Critic episodes are balanced between right and wrong solver answers
where both exist, so the critic cannot score well by always saying the same word.

Exercise: `pytest tests/stages/curriculum/test_episodes.py`.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Sequence

from .episodes import Episode
from .rollout import Sample

YES, NO = "yes", "no"


def critic_prompt(task_prompt: str, answer: str) -> str:
    return f"check: {task_prompt} -> {answer}"


def verdict_scorer(truth: str):
    """Score 1 when the critic's first word is the true verdict, else 0 (hedging with both words scores 0)."""

    def score(output: str) -> float:
        words = re.findall(r"[a-z]+", output.lower())
        if not words or (YES in words and NO in words):
            return 0.0
        return 1.0 if words[0] == truth else 0.0

    return score


def critic_episodes(
    episodes: Sequence[Episode], samples: Sequence[Sample], rng: random.Random, per_task: int = 2,
) -> list[Episode]:
    """Critic episodes for the solver samples of multi-agent episodes: up to one right and one wrong per task."""
    out: list[Episode] = []
    by_group: dict[int, list[Sample]] = {}
    for s in samples:
        if episodes[s.group].kind == "multi_agent":
            by_group.setdefault(s.group, []).append(s)
    for group in sorted(by_group):
        task = episodes[group].task
        right = [s for s in by_group[group] if s.score >= 1.0]
        wrong = [s for s in by_group[group] if s.score < 1.0 and s.text.strip()]
        picks = ([rng.choice(right)] if right else []) + ([rng.choice(wrong)] if wrong else [])
        for s in picks[:per_task]:
            truth = YES if s.score >= 1.0 else NO
            prompt = critic_prompt(task.prompt, s.text.strip())
            critic_task = replace(
                task, task_id=f"{task.task_id}-critic", prompt=prompt, answer=truth, rationale=None,
                meta={**task.meta, "role": "critic"},
            )
            out.append(Episode(critic_task, prompt, "critic", scorer=verdict_scorer(truth)))
    return out


def critic_accuracy(samples: Sequence[Sample]) -> float:
    return sum(s.score for s in samples) / max(1, len(samples))
