"""The generation evaluation path: decode answers (greedy by default) and score them with the verifiers."""

from __future__ import annotations

from typing import Sequence

from ..models import generate
from ..tasks import Task, verify


def _max_new_tokens(tokenizer, tasks: Sequence[Task], margin: int) -> int:
    longest = max(len(tokenizer(t.answer, add_special_tokens=False)["input_ids"]) for t in tasks)
    return longest + margin


def generate_answers(
    model, tokenizer, tasks: Sequence[Task], *, batch_size: int = 64, max_new_tokens: int | None = None,
    temperature: float = 0.0, seed: int | None = None, margin: int = 8,
) -> list[str]:
    """Generated answer text for each task (cut at the terminator)."""
    if not tasks:
        return []
    budget = max_new_tokens or _max_new_tokens(tokenizer, tasks, margin)
    return generate(
        model, tokenizer, [t.prompt for t in tasks], max_new_tokens=budget, temperature=temperature,
        batch_size=batch_size, seed=seed,
    )


def generate_exact_match(
    model, tokenizer, tasks: Sequence[Task], *, batch_size: int = 64, max_new_tokens: int | None = None,
) -> list[float]:
    """Verifier score of each greedy generation."""
    outputs = generate_answers(model, tokenizer, tasks, batch_size=batch_size, max_new_tokens=max_new_tokens)
    return [verify(task, out) for task, out in zip(tasks, outputs)]
