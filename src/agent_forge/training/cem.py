"""The cross-entropy method (CEM): a derivative-free search of a box [low, high]^k, deterministic with a seed.

Each iteration samples a population from a diagonal Gaussian (clamped into the box), scores every member,
and refits the Gaussian's mean and standard deviation to the elite (the best `elite_fraction`). Scores are
compared as Python values, so an objective may return a tuple: (exact matches, log-likelihood) breaks ties of
the first by the second, as Transformer²'s few-shot adaptation does with its mixture weights.

    result = cem_maximize(lambda a: -((a - 0.3) ** 2).sum().item(), dim=3, seed=0)
    result.best   # close to [0.3, 0.3, 0.3]

The best member ever scored is returned (not the final mean), and the initial mean is scored first, so the
result is never worse than the starting point. Exercise: `pytest tests/training/test_cem.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import ForgeError


@dataclass
class CEMResult:
    """The best point found, its score, and per iteration the best and elite-mean scores (first component)."""

    best: torch.Tensor
    score: Any
    evaluations: int
    history: list[dict] = field(default_factory=list)


def _first(score) -> float:
    return float(score[0] if isinstance(score, (tuple, list)) else score)


def cem_maximize(
    objective: Callable[[torch.Tensor], Any], dim: int, *, population: int = 32, elite_fraction: float = 0.2,
    iterations: int = 10, seed: int = 0, low: float = 0.0, high: float = 1.0, init_mean: torch.Tensor | None = None,
    init_std: float | None = None, min_std: float = 1e-3,
) -> CEMResult:
    """Maximise `objective` (a float64 vector of length `dim` -> comparable score) over [low, high]^dim."""
    if dim < 1 or population < 2 or iterations < 1 or not 0 < elite_fraction <= 1 or not low < high:
        raise ForgeError(f"cem: bad settings (dim={dim}, population={population}, iterations={iterations}, "
                         f"elite_fraction={elite_fraction}, box=[{low}, {high}])")
    n_elite = max(1, math.ceil(population * elite_fraction))
    gen = torch.Generator().manual_seed(int(seed))
    mean = (torch.full((dim,), (low + high) / 2, dtype=torch.float64) if init_mean is None
            else init_mean.detach().to(torch.float64).clamp(low, high).clone())
    if mean.shape != (dim,):
        raise ForgeError(f"cem: init_mean has shape {tuple(mean.shape)}, expected ({dim},)")
    std = torch.full((dim,), (high - low) / 2 if init_std is None else float(init_std), dtype=torch.float64)
    best, best_score = mean.clone(), objective(mean.clone())
    evaluations, history = 1, []
    for it in range(iterations):
        # sampled with our own generator: the search is reproducible whatever else draws random numbers
        noise = torch.randn((population, dim), generator=gen, dtype=torch.float64)
        members = (mean + std * noise).clamp(low, high)
        scores = [objective(m.clone()) for m in members]
        evaluations += population
        # stable order: equal scores keep the member order, so ties cannot depend on sort internals
        order = sorted(range(population), key=lambda i: scores[i], reverse=True)
        elite = members[order[:n_elite]]
        if scores[order[0]] > best_score:
            best, best_score = members[order[0]].clone(), scores[order[0]]
        mean = elite.mean(0)
        std = elite.std(0, unbiased=False).clamp_min(min_std) if n_elite > 1 else std.mul(0.5).clamp_min(min_std)
        history.append({"iteration": it + 1, "best": round(_first(scores[order[0]]), 6),
                        "elite_mean": round(sum(_first(scores[i]) for i in order[:n_elite]) / n_elite, 6)})
    return CEMResult(best=best, score=best_score, evaluations=evaluations, history=history)


__all__ = ["CEMResult", "cem_maximize"]
