"""Dream: explore new variations of the level's tasks at high temperature and keep only what verifies.

Fresh training-split tasks at the level being learned (and, with some probability, one level beyond it) are
answered several times at a high temperature; every answer is checked by the task's verifier and only the
verified ones enter the replay buffer, where sleep and later cycles learn from them. Unverified dreams are
discarded, so exploration can never teach a wrong answer.

Exercise: `pytest tests/stages/curriculum/test_sleep_dream.py`.
"""

from __future__ import annotations

import random

from ...models import generate
from ...tasks import verify
from ...training.replay import ReplayBuffer
from .episodes import sample_train_task


def dream(
    model, tokenizer, targets: dict[str, int], replay: ReplayBuffer, *, prompts: int, samples: int,
    temperature: float, max_new_tokens: int, seed: int, world_seed: int, beyond_probability: float = 0.25,
) -> dict:
    """Dream `prompts` x `samples` answers; store the verified ones; return counts."""
    rng = random.Random(seed)
    domains = sorted(targets)
    tasks = []
    for _ in range(prompts):
        domain = rng.choice(domains)
        level = targets[domain]
        if beyond_probability > 0 and level < 10 and rng.random() < beyond_probability:
            level += 1
        tasks.append(sample_train_task(domain, level, rng, world_seed))
    outputs = generate(
        model, tokenizer, [t.prompt for t in tasks], max_new_tokens=max_new_tokens, temperature=temperature,
        n=samples, seed=seed, progress=False,
    )
    kept = 0
    for i, task in enumerate(tasks):
        # a verified dream is stored in the canonical answer layout, so formatting noise the verifier
        # forgives is never rehearsed
        good = [(task.prompt, task.answer) for out in outputs[i * samples : (i + 1) * samples] if verify(task, out) >= 1.0]
        kept += replay.add(f"{task.domain}:{task.level}", good)
    return {"dreamed": len(outputs), "kept": kept, "verified_rate": _rate(tasks, outputs, samples)}


def _rate(tasks, outputs, samples) -> float:
    hits = sum(verify(t, outputs[i * samples + j]) >= 1.0 for i, t in enumerate(tasks) for j in range(samples))
    return hits / max(1, len(outputs))
