"""CMA-ES over the continuous parameters of a fixed recipe structure (as mergekit-evolve and Sakana's work do).

The template recipe fixes the methods and layer path; its continuous genes (weights, densities, t, DFS scales)
are mapped to [0, 1] by their ranges and searched with the `cma` package (`pip install cma`), one CMA
generation per evolution generation, with the same lineage, history, patience and checkpoints as the genetic
algorithm. CMA is given its own `RandomState` (by default it draws from numpy's global one, which a pickle
round trip silently replaces by a copy), and the strategy object is pickled into the checkpoint, so a resumed
run asks for the same points an uninterrupted one would. Exercise:
`python -m pytest tests/stages/evomerge/test_cmaes.py`.
"""

from __future__ import annotations

import base64
import importlib.util
import pickle
from typing import Any

import numpy as np

from ...errors import ForgeError
from .engine import Candidate, Proposal
from .methods import MERGE_METHODS
from .operators import repair
from .recipe import Recipe
from .space import SearchSpace


def cma_available() -> bool:
    return importlib.util.find_spec("cma") is not None


class CmaStrategy:
    """Proposes each generation with CMA-ES `ask`, learns from the evaluated one with `tell`."""

    def __init__(self, space: SearchSpace, template: Recipe, population_size: int, sigma: float = 0.15, seed: int = 0):
        if not cma_available():
            raise ForgeError("evomerge.optimizer 'cmaes' needs the cma package: pip install cma")
        space.validate(template)
        self.space = space
        self.template = template.copy()
        self.population_size = population_size
        self.sigma = sigma
        self.seed = seed
        self.bounds = self._bounds()
        self._es = None
        self._asked: list[list[float]] = []

    # ---- genes ---------------------------------------------------------------------------------------
    def _bounds(self) -> list[tuple[float, float]]:
        bounds = []
        for step in (self.template.interp, self.template.vector):
            if step is not None:
                for pname, arr in step.params.items():
                    spec = MERGE_METHODS[step.method].params[pname]
                    bounds += [(spec.low, spec.high)] * arr.size
        layer = self.template.layer
        if layer is not None and layer.kind == "dfs":
            bounds += [self.space.dfs_scale_range] * len(layer.scales)
        if not bounds:
            raise ForgeError("the CMA-ES template has no continuous parameters to tune")
        return bounds

    def encode(self, recipe: Recipe) -> np.ndarray:
        values = []
        for step in (recipe.interp, recipe.vector):
            if step is not None:
                for arr in step.params.values():
                    values += arr.ravel().tolist()
        if recipe.layer is not None and recipe.layer.kind == "dfs":
            values += list(recipe.layer.scales)
        low, high = np.array(self.bounds).T
        return (np.asarray(values) - low) / (high - low)

    def decode(self, x) -> Recipe:
        low, high = np.array(self.bounds).T
        values = iter((low + np.clip(np.asarray(x), 0.0, 1.0) * (high - low)).tolist())
        recipe = self.template.copy()
        for step in (recipe.interp, recipe.vector):
            if step is not None:
                for pname, arr in step.params.items():
                    step.params[pname] = np.array([next(values) for _ in range(arr.size)]).reshape(arr.shape)
        if recipe.layer is not None and recipe.layer.kind == "dfs":
            recipe.layer.scales = [next(values) for _ in recipe.layer.scales]
        return repair(recipe, self.space)

    def _ask(self) -> list[Proposal]:
        self._asked = [list(map(float, x)) for x in self._es.ask()]
        return [Proposal(self.decode(x), [], "cma-es") for x in self._asked]

    def initial(self, rng: np.random.Generator) -> list[Proposal]:
        import cma

        x0 = np.clip(self.encode(self.template), 0.0, 1.0)

        own_rng = np.random.RandomState(self.seed)
        self._es = cma.CMAEvolutionStrategy(x0.tolist(), self.sigma, {
            "popsize": self.population_size, "randn": own_rng.randn, "seed": float("nan"),
            "bounds": [0.0, 1.0], "verbose": -9, "verb_log": 0, "verb_disp": 0,
        })
        return self._ask()

    def breed(self, population: list[Candidate], seen: set[str], rng: np.random.Generator) -> list[Proposal | Candidate]:
        # CMA minimises; the log-likelihood only separates equal accuracies (1e-4 x it is far below one item's share)
        losses = [-(c.fitness.score + 1e-4 * c.fitness.tiebreak) for c in population]
        self._es.tell(self._asked, losses)
        parents = [c.id for c in population]
        return [Proposal(p.recipe, parents, p.origin) for p in self._ask()]

    def state(self) -> dict[str, Any]:
        blob = pickle.dumps((self._es, self._asked))
        return {"pickle": base64.b64encode(blob).decode("ascii")}

    def load(self, state: dict[str, Any]) -> None:
        self._es, self._asked = pickle.loads(base64.b64decode(state["pickle"]))
