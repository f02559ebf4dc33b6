"""Levels grow visibly, fit the tiny profile's 256 positions, and describe themselves; generation is fast."""

import statistics
import time

import pytest

from agent_forge.tasks import DOMAINS, LEVELS, make_tasks


def _mean_work(domain: str, level: int) -> float:
    return statistics.mean(t.meta["work"] for t in make_tasks(domain, level, "train", 300, seed=0))


@pytest.mark.parametrize("domain", ["arithmetic", "strings", "logic"])
def test_work_grows_with_every_level(domain):
    """`work` counts elementary steps: digit operations and carries, letters processed, items or statements."""
    works = [_mean_work(domain, level) for level in LEVELS]
    assert all(a < b for a, b in zip(works, works[1:])), works
    assert works[-1] > 4 * works[0]


def test_facts_levels_need_more_facts():
    works = [_mean_work("facts", level) for level in LEVELS]
    assert all(a <= b for a, b in zip(works, works[1:])), works
    assert all(a < b for a, b in zip(works, works[2:])), works  # strictly more every two levels


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_prompt_and_answer_fit_the_tiny_model(domain):
    for level in LEVELS:
        tasks = make_tasks(domain, level, "train", 300, seed=1)
        longest = max(len(t.prompt) + len(t.answer) for t in tasks)
        assert longest <= 200, (domain, level, longest)
        assert all(t.prompt == t.prompt.strip() and t.answer == t.answer.strip() for t in tasks)
    assert statistics.mean(len(t.prompt) for t in make_tasks(domain, 10, "train", 100, 0)) > statistics.mean(
        len(t.prompt) for t in make_tasks(domain, 1, "train", 100, 0))


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_each_level_describes_itself_differently(domain):
    descriptions = [DOMAINS[domain].describe_level(level) for level in LEVELS]
    assert len(set(descriptions)) == len(LEVELS)
    assert all(d.startswith(f"level {level}:") for level, d in zip(LEVELS, descriptions))


def test_generating_a_thousand_tasks_is_fast():
    for domain in DOMAINS:
        for split in ("train", "test"):
            start = time.process_time()
            make_tasks(domain, 10, split, 1000, seed=0)
            elapsed = time.process_time() - start
            assert elapsed < 1.5, (domain, split, elapsed)  # typically 0.05 s (train) to 0.4 s (test)
