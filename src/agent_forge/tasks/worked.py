"""The worked form of a task: the prompt asks for steps, the answer writes them out before the result.

`"<prompt> (show steps)"` is answered by `"<steps> => <answer>"`. Quiet-STaR trains on a share of tasks in this
form, and the experts stage's self-reflection writes and checks reasonings in it, so both read it from here.
"""

from __future__ import annotations

from .base import Task

WORKED_SUFFIX = " (show steps)"
STEPS_TO_ANSWER = " => "


def worked_prompt(task: Task) -> str:
    """The prompt that asks for the task's steps."""
    return task.prompt + WORKED_SUFFIX


def worked_pair(task: Task) -> tuple[str, str] | None:
    """The worked-steps form of a task, or None when its domain gives no steps."""
    if not task.rationale:
        return None
    return worked_prompt(task), worked_answer(task.rationale, task.answer)


def worked_answer(steps: str, answer: str) -> str:
    """Steps and result joined the way the worked form writes them."""
    return steps + STEPS_TO_ANSWER + answer


def split_worked(text: str) -> tuple[str, str] | None:
    """(steps, answer) of a worked answer, split at the last arrow; None when it has no arrow or no steps."""
    steps, arrow, answer = text.rpartition(STEPS_TO_ANSWER.strip())
    steps, answer = steps.strip(), answer.strip()
    if not arrow or not steps:
        return None
    return steps, answer
