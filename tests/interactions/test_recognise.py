"""Verified outcomes: a served prompt is recognised as a task of its domain, with the reference answer."""

from __future__ import annotations

import pytest

from agent_forge.interactions import recognise, verify_answer
from agent_forge.tasks import DOMAINS, make_tasks


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_generated_task_is_recognised_with_its_own_answer(domain):
    for level in range(1, 11):
        for task in make_tasks(domain, level, "test", 12, seed=5):
            found = recognise(task.prompt, facts_world=5)
            assert found is not None, task.prompt
            assert (found.domain, found.answer) == (domain, task.answer), task.prompt
            # as a served prompt arrives: rendered with a trailing newline
            assert recognise(task.prompt + "\n", facts_world=5).answer == task.answer


def test_facts_need_the_right_world_and_known_names():
    task = make_tasks("facts", 3, "test", 1, seed=5)[0]
    assert recognise(task.prompt) is None  # no world: not verifiable, so not verified
    assert recognise("where does zzzzqq live?", facts_world=5) is None


@pytest.mark.parametrize("prompt", [
    "hello", "12+34", "12+34 (digits reversed) please", "12-34 (digits reversed)", "1+2*3 (digits reversed)",
    "reverse(abc", "reverse(ABC)", "shift(abc,x)", "explode(abc)", "max 1 2 x", "next: a b c d", "sort",
    "a=1 b=2; c=a; c?", "a=1 a=2; b=a; a?", "", "x" * 5000,
])
def test_other_prompts_are_not_tasks(prompt):
    assert recognise(prompt, facts_world=0) is None


def test_verify_answer_scores_with_the_domain_verifier():
    task, score = verify_answer("47+85 (digits reversed)", "The answer is 231.")
    assert (task.domain, task.answer, score) == ("arithmetic", "231", 1.0)
    assert verify_answer("47+85 (digits reversed)", "132")[1] == 0.0
    assert verify_answer("reverse(shift(kwt,1))", "uxl")[1] == 1.0
    assert verify_answer("reverse(shift(kwt,1))", "UXL")[1] == 0.0  # strings keep their case
    assert verify_answer("sort 3 1 0 2", "0123")[1] == 1.0
    assert verify_answer("a=3 b=5 c=1; a=b; swap b c; c?", "5")[1] == 1.0
    assert verify_answer("what is love?", "baby don't hurt me") is None
