"""The genetic algorithm: seed combinations plus random recipes, then elitism, tournament selection,
crossover and mutation each generation.

Generation 0 holds the original design's eight combinations {linear, SLERP} x {TIES, DARE} x
{Frankenmerge, DFS}, any extra recipes the caller supplies (for example plain task arithmetic), and random
recipes up to the population size. Each next generation carries the `elite` best candidates over unchanged
(they are not re-evaluated) and fills the rest with children: a tournament picks a parent, with probability
`crossover_rate` a second tournament picks a partner for crossover, and every child is mutated; a child
identical to a recipe already evaluated is mutated again (up to a few times) so evaluations are not wasted.
Exercise: `python -m pytest tests/stages/evomerge/test_engine.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import ForgeError
from .engine import Candidate, Proposal
from .operators import MutationRates, crossover, mutate
from .recipe import Recipe
from .space import SearchSpace


@dataclass(frozen=True)
class GASettings:
    population_size: int = 16
    elite: int = 2
    tournament_size: int = 3
    crossover_rate: float = 0.5
    seed_combinations: bool = True
    rates: MutationRates = field(default_factory=MutationRates)

    def __post_init__(self):
        if self.population_size < 2:
            raise ForgeError(f"evomerge.population_size must be >= 2, got {self.population_size}")
        if not 0 <= self.elite < self.population_size:
            raise ForgeError(f"evomerge.elite must be in [0, population_size), got {self.elite}")
        if self.tournament_size < 1:
            raise ForgeError(f"evomerge.tournament_size must be >= 1, got {self.tournament_size}")


class GeneticStrategy:
    """Proposes populations for `engine.Evolution`; stateless between generations except for the RNG it is given."""

    def __init__(self, space: SearchSpace, settings: GASettings, extra_initial: Sequence[Recipe] = ()):
        self.space = space
        self.settings = settings
        self.extra_initial = [r.copy() for r in extra_initial]
        for recipe in self.extra_initial:
            space.validate(recipe)

    def initial(self, rng: np.random.Generator) -> list[Proposal]:
        size = self.settings.population_size
        given = [Proposal(r.copy(), [], "given") for r in self.extra_initial][:size]
        proposals = []
        if self.settings.seed_combinations:
            # a small population drops seed combinations before the given recipes (the baselines and parents)
            combos = [Proposal(r, [], "seed-combination") for r in self.space.seed_recipes(rng)]
            proposals += combos[: max(0, size - len(given))]
        proposals += given
        seen = {p.recipe.key() for p in proposals}
        while len(proposals) < size:
            recipe = self.space.random_recipe(rng)
            if recipe.key() not in seen:
                seen.add(recipe.key())
                proposals.append(Proposal(recipe, [], "random"))
        return proposals

    def _tournament(self, population: list[Candidate], rng: np.random.Generator) -> Candidate:
        size = min(self.settings.tournament_size, len(population))
        picks = rng.choice(len(population), size=size, replace=False)
        return min((population[int(i)] for i in picks), key=Candidate.sort_key)

    def breed(self, population: list[Candidate], seen: set[str], rng: np.random.Generator) -> list[Proposal | Candidate]:
        ranked = sorted(population, key=Candidate.sort_key)
        nxt: list[Proposal | Candidate] = list(ranked[: self.settings.elite])
        while len(nxt) < self.settings.population_size:
            first = self._tournament(population, rng)
            if rng.random() < self.settings.crossover_rate:
                second = self._tournament(population, rng)
                base, parents, origin = crossover(first.recipe, second.recipe, self.space, rng), [first.id, second.id], "crossover"
            else:
                base, parents, origin = first.recipe, [first.id], "mutation"
            child = mutate(base, self.space, rng, self.settings.rates)
            for _ in range(5):
                if child.key() not in seen:
                    break
                child = mutate(child, self.space, rng, self.settings.rates)
            seen.add(child.key())
            nxt.append(Proposal(child, parents, origin))
        return nxt

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        pass
