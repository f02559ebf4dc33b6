"""The cross-entropy method: improves a known objective in the unit box, is deterministic, breaks ties."""

from __future__ import annotations

import pytest
import torch

from agent_forge.errors import ForgeError
from agent_forge.training.cem import cem_maximize

TARGET = torch.tensor([0.2, 0.9, 0.55], dtype=torch.float64)


def _quadratic(a: torch.Tensor) -> float:
    return -float(((a - TARGET) ** 2).sum())


def test_cem_finds_the_maximum_of_a_quadratic_in_the_unit_box():
    result = cem_maximize(_quadratic, 3, population=32, elite_fraction=0.2, iterations=12, seed=0)
    start = _quadratic(torch.full((3,), 0.5, dtype=torch.float64))
    assert result.score > start
    assert torch.allclose(result.best, TARGET, atol=0.03)
    assert result.evaluations == 1 + 12 * 32
    # the elite's mean score improves over the run
    assert result.history[-1]["elite_mean"] > result.history[0]["elite_mean"]


def test_cem_respects_the_box_when_the_maximum_lies_outside():
    result = cem_maximize(lambda a: float(a.sum()), 2, iterations=8, seed=1)  # maximum at the corner (1, 1)
    assert float(result.best.min()) >= 0.0 and float(result.best.max()) <= 1.0
    assert torch.allclose(result.best, torch.ones(2, dtype=torch.float64), atol=0.02)


def test_cem_is_deterministic_with_a_seed_and_differs_across_seeds():
    a = cem_maximize(_quadratic, 3, iterations=3, seed=7)
    b = cem_maximize(_quadratic, 3, iterations=3, seed=7)
    c = cem_maximize(_quadratic, 3, iterations=3, seed=8)
    assert torch.equal(a.best, b.best) and a.history == b.history
    assert not torch.equal(a.best, c.best)


def test_tuple_scores_break_ties_of_the_first_component_by_the_second():
    # the first component (a coarse "exact match" count) is flat over most of the box; the second (a smooth
    # "log-likelihood") points to the corner: only the tie-break can lead there
    def score(a):
        return (int(float(a[0]) > 2.0), -float((a - 1.0).abs().sum()))

    result = cem_maximize(score, 2, iterations=8, seed=0)
    assert result.score[0] == 0 and float(result.best.min()) > 0.95


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ForgeError, match="cem: bad settings"):
        cem_maximize(_quadratic, 0)
    with pytest.raises(ForgeError, match="init_mean"):
        cem_maximize(_quadratic, 3, init_mean=torch.zeros(2))
