"""Self-modeling: the model learns from its own verified generations and learns to predict its own success.

Every few cycles the model answers a set of training prompts at several temperatures; verified answers become
training pairs (its own good behaviour across the range from careful to creative). It is also asked, for
each prompt, "sure? <prompt>" and taught to answer "yes" when its greedy answer is right and "no" when it is
wrong. Its confidence is then P(yes) / (P(yes) + P(no)) from one teacher-forced pass, a log-loss-trained
probability, so calibration can be measured as expected calibration error on held-out tasks. The expert
dispatcher of stage 3 reads this confidence: `predict_confidence` lives in `inference.confidence` (shared by
the stages), and is re-exported here for the curriculum's callers.

Exercise: `pytest tests/stages/curriculum/test_self_model.py`.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence


from ...evaluation import fast_exact_match, percent
from ...inference.confidence import NO, YES, confidence_prompt, predict_confidence
from ...models import generate
from ...tasks import Task, verify
from .calibration import expected_calibration_error


def measure_calibration(model, tokenizer, tasks: Sequence[Task], bins: int = 10) -> dict:
    """ECE of the model's confidence against its greedy correctness on `tasks`, with the raw numbers.

    `accuracy` is in percent like every accuracy; the confidences and the ECE are probabilities (0-1).
    """
    correct = [1.0 if ok else 0.0 for ok in fast_exact_match(model, tokenizer, list(tasks))]
    confidence = predict_confidence(model, tokenizer, [t.prompt for t in tasks])
    return {
        "ece": expected_calibration_error(confidence, correct, bins),
        "mean_confidence": sum(confidence) / max(1, len(confidence)),
        "accuracy": percent(sum(correct) / max(1, len(correct))),
        "confidence": confidence,
        "correct": correct,
    }


def self_model_round(
    model, tokenizer, tasks: Sequence[Task], *, temperatures: Sequence[float], steps: int, seed: int,
    max_new_tokens: int, train_step: Callable[[Sequence[tuple[str, str]]], float], batch_size: int = 32,
) -> dict:
    """Generate across temperatures, keep verified answers, and train on them plus confidence labels.

    `train_step(pairs)` takes one supervised step and returns its loss.
    """
    tasks = list(tasks)
    verified: list[tuple[str, str]] = []
    by_temperature = {}
    for k, temperature in enumerate(temperatures):
        outputs = generate(
            model, tokenizer, [t.prompt for t in tasks], max_new_tokens=max_new_tokens, temperature=temperature,
            seed=seed * 31 + k, progress=False,
        )
        ok = [verify(t, o) >= 1.0 for t, o in zip(tasks, outputs)]
        by_temperature[str(temperature)] = sum(ok) / max(1, len(ok))
        verified.extend((t.prompt, t.answer) for t, o, good in zip(tasks, outputs, ok) if good)
    greedy_right = fast_exact_match(model, tokenizer, tasks)
    labels = [(confidence_prompt(t.prompt), YES if right else NO) for t, right in zip(tasks, greedy_right)]
    pool = list(dict.fromkeys(verified))
    rng = random.Random(seed)
    losses = []
    if labels:
        half = max(1, batch_size // 2)
        for _ in range(steps):
            # half confidence labels, half own verified answers: neither skill crowds out the other
            own = [rng.choice(pool) for _ in range(half)] if pool else []
            losses.append(train_step(own + [rng.choice(labels) for _ in range(batch_size - len(own))]))
    return {
        "verified": len(set(verified)),
        "success_by_temperature": by_temperature,
        "greedy_accuracy": percent(sum(greedy_right) / max(1, len(greedy_right))),
        "loss": round(sum(losses) / len(losses), 4) if losses else None,
        "verified_pairs": list(dict.fromkeys(verified)),
    }

