"""A synthetic fitness over recipes, so the evolution loop can be tested without models (and in subprocesses).

It rewards task-vector weights near a per-group target and small DFS/Frankenmerge paths; it is a real function
of the recipe, deterministic, and cheap. `run_search(out_dir, seed, generations, ...)` runs a whole evolution.
"""

from __future__ import annotations

import time

import numpy as np

from agent_forge.stages.evomerge.engine import Evolution, LoopSettings
from agent_forge.stages.evomerge.ga import GASettings, GeneticStrategy
from agent_forge.stages.evomerge.population import Fitness, LocalEvaluator
from agent_forge.stages.evomerge.space import SearchSpace

SPACE = SearchSpace(num_models=3, num_layers=2, num_groups=4, dfs_repeats=2)
TARGET = np.array([[0.9, 1.2, 0.3, 1.0], [1.1, 0.2, 1.3, 0.8], [0.4, 1.0, 1.0, 1.2]])


class SyntheticFitness:
    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def __call__(self, recipe) -> Fitness:
        if self.delay:
            time.sleep(self.delay)
        score = 0.0
        if recipe.vector is not None:
            w = recipe.vector.params["weight"][-3:]
            score += 1.0 - float(np.mean((w - TARGET) ** 2))
            if "density" in recipe.vector.params:
                score -= 0.1 * float(np.mean(1.0 - recipe.vector.params["density"]))
        if recipe.interp is not None:
            score += 0.1
        if recipe.layer is not None:
            score -= 0.05
        return Fitness(score=round(score, 6), tiebreak=-float(recipe.seed % 97) / 97.0, details={"synthetic": True})


def make_synthetic_fitness():
    """Factory used by the Ray evaluator (runs inside each actor)."""
    return SyntheticFitness()


def run_search(out_dir, seed: int = 0, generations: int = 6, population: int = 12, patience: int = 10,
               delay: float = 0.0, evaluator=None, progress: bool = False, plot: bool = False):
    strategy = GeneticStrategy(SPACE, GASettings(population_size=population, elite=2))
    evaluator = evaluator or LocalEvaluator(SyntheticFitness(delay))
    loop = Evolution(SPACE, strategy, evaluator, LoopSettings(generations=generations, patience=patience, seed=seed),
                     out_dir, fingerprint="synthetic", progress=progress, plot=plot)
    return loop.run()


if __name__ == "__main__":  # used by the kill-and-resume test
    import sys

    run_search(sys.argv[1], seed=int(sys.argv[2]), generations=int(sys.argv[3]), delay=float(sys.argv[4]))
