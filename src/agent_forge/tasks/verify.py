"""Score a model's output against a task's reference answer.

The verifier forgives formatting noise (surrounding whitespace, letter case, a trailing period, quotes or
bold markers around the answer, a leading "answer:" / "the answer is") and nothing else: after that
normalisation the output must equal the reference exactly. So hedges ("7 or 8", "maybe 7"), lists of
candidates ("7, 8") and the reference buried in other text all score 0. Exercise it with:

    python -c "from agent_forge.tasks import make_tasks, verify; t = make_tasks('arithmetic', 3, 'test', 1, 0)[0]; print(t.answer, verify(t, 'The answer is ' + t.answer + '.'))"
"""

from __future__ import annotations

import re

from .base import Task

# Longest first, so "the final answer is" is removed whole rather than leaving "final answer is" behind.
_LEAD_INS = (
    "the final answer is",
    "final answer:",
    "the answer is:",
    "the answer is",
    "answer is:",
    "answer is",
    "answer:",
    "output:",
    "result:",
)
_WRAPPERS = ("**", "`", '"', "'")
_SPACES = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """The canonical form that is compared: lowercase, single spaces, formatting wrappers removed."""
    text = _SPACES.sub(" ", text).strip().lower()
    changed = True
    while changed:
        before = text
        for lead in _LEAD_INS:
            if text.startswith(lead):
                text = text[len(lead):].strip()
                break
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1].rstrip()
        for mark in _WRAPPERS:
            if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
                text = text[len(mark):-len(mark)].strip()
        changed = text != before
    return text


def verify(task: Task, output: str) -> float:
    """1.0 if the output states exactly the reference answer (up to formatting noise), else 0.0."""
    if not isinstance(output, str):
        raise TypeError(f"verify expects the model output as a str, got {type(output).__name__}")
    reference = normalize_answer(task.answer)
    return 1.0 if reference and normalize_answer(output) == reference else 0.0
