"""Few-shot adaptation (Transformer²'s third dispatch mode): a mixture of the trained experts for a task family
none of them was trained on, searched with CEM on a handful of its examples.

The mixture is z = sum_k a_k z_k (`mix`), a in [0, 1]^K. Each candidate a is scored on the few-shot examples
with one teacher-forced pass under its weights: (greedy exact matches, mean answer log-likelihood), so on a
handful of items, where exact-match counts tie often, the log-likelihood decides. The SVF rescale keeps
sum(S) fixed, so a and c*a give the same weights: the box's centre (every a_k = 0.5) is the uniform mixture.

Exercise: `pytest tests/stages/experts/test_fewshot.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ...errors import ForgeError
from ...evaluation.teacher_forced import teacher_forced
from ...models.formats.experts import Decomposition, held, mix
from ...tasks import Task
from ...training.cem import cem_maximize


@dataclass
class FewShotMixture:
    """The chosen mixture weights (by expert), its z, its few-shot score and how the search went."""

    weights: dict[str, float]
    z: dict[str, torch.Tensor]
    exact: int
    loglik: float
    evaluations: int
    history: list[dict]
    seconds: float


def parse_family(family: str) -> tuple[str, int | None]:
    """"domain" or "domain:level" -> (domain, level or None); ForgeError on anything else."""
    domain, _, level = family.partition(":")
    if not domain or (level and not level.isdigit()):
        raise ForgeError(f"experts.cem_family must be 'domain' or 'domain:level', got {family!r}")
    return domain, int(level) if level else None


def adapt_mixture(model, tokenizer, decomposition: Mapping[str, Decomposition],
                  experts: Mapping[str, Mapping[str, torch.Tensor]], shots: Sequence[Task], *, population: int = 32,
                  elite_fraction: float = 0.2, iterations: int = 5, seed: int = 0,
                  application: str = "weights") -> FewShotMixture:
    """Search the mixture weights on `shots` with CEM; the weights are held only while a candidate is scored."""
    if not experts or not shots:
        raise ForgeError("few-shot adaptation needs at least one expert and one example")
    names = sorted(experts)
    vectors = [experts[n] for n in names]

    def score(a: torch.Tensor) -> tuple[int, float]:
        with held(model, decomposition, mix(vectors, a.tolist()), application):
            result = teacher_forced(model, tokenizer, shots)
        return sum(result.exact), sum(result.loglik) / len(result.loglik)

    start = time.perf_counter()
    found = cem_maximize(score, len(names), population=population, elite_fraction=elite_fraction,
                         iterations=iterations, seed=seed)
    weights = {n: round(float(a), 6) for n, a in zip(names, found.best)}
    exact, loglik = found.score
    return FewShotMixture(weights, mix(vectors, found.best.tolist()), int(exact), float(loglik), found.evaluations,
                          found.history, time.perf_counter() - start)
