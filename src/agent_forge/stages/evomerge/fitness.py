"""Fitness of a recipe: exact match on the validation split (evaluation fast path), log-likelihood as tie-breaker.

Accuracies, and so the fitness score, are percentages (0-100) like every accuracy in the project.

`FitnessSpec` is the picklable description (model paths, domains, levels, items, seed) from which a
`ValidationFitness` is built in this process or inside a Ray actor, identically. `score_by_domain` is shared with
the stage's test-split report so both use one definition of "mean over domains". Exercise:
`python -m pytest tests/stages/evomerge/test_stage.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ...errors import ForgeError
from ...evaluation import teacher_forced
from ...tasks import DOMAINS, Task, task_grid
from .build import RecipeBuilder, mergeable_state_dict
from .groups import LayerGrouping
from .population import Fitness
from .recipe import Recipe
from .space import SearchSpace


def domain_tasks(domains: Sequence[str], levels: Sequence[int], split: str, items_per_level: int, seed: int) -> list[Task]:
    """Tasks of every (domain, level), in a fixed order; ForgeError for unknown domains."""
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        raise ForgeError(f"evomerge: unknown task domain(s) {unknown}; known: {sorted(DOMAINS)} (set evomerge.domains)")
    return task_grid(domains, levels, split, items_per_level, seed)


def score_by_domain(model, tokenizer, tasks: Sequence[Task], batch_size: int) -> tuple[dict[str, float], float]:
    """(accuracy per domain in percent, mean answer log-likelihood) from one teacher-forced pass."""
    result = teacher_forced(model, tokenizer, tasks, batch_size)
    hits: dict[str, list[bool]] = {}
    for task, exact in zip(tasks, result.exact):
        hits.setdefault(task.domain, []).append(exact)
    accuracy = {d: 100.0 * sum(v) / len(v) for d, v in hits.items()}
    loglik = sum(result.loglik) / max(len(result.loglik), 1)
    return accuracy, loglik


def objective_value(accuracy: Mapping[str, float], objective: str) -> float:
    """`mean`: mean over domains. `balanced`: (mean + worst domain) / 2, which pays for keeping every skill."""
    values = list(accuracy.values())
    mean = sum(values) / len(values)
    return mean if objective == "mean" else 0.5 * (mean + min(values))


class ValidationFitness:
    """Builds a recipe's model and scores it on the validation tasks."""

    def __init__(self, builder: RecipeBuilder, tokenizer, tasks: Sequence[Task], batch_size: int, objective: str):
        if not tasks:
            raise ForgeError("evomerge: no validation tasks (check evomerge.levels and val_items_per_level)")
        self.builder = builder
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.batch_size = batch_size
        self.objective = objective

    @torch.no_grad()
    def __call__(self, recipe: Recipe) -> Fitness:
        model = self.builder.model(recipe)
        accuracy, loglik = score_by_domain(model, self.tokenizer, self.tasks, self.batch_size)
        return Fitness(score=objective_value(accuracy, self.objective), tiebreak=loglik,
                       details={"val_accuracy_by_domain": {d: round(a, 2) for d, a in accuracy.items()},
                                "depth": model.config.num_hidden_layers})


@dataclass(frozen=True)
class FitnessSpec:
    """Everything needed to rebuild the fitness function elsewhere (a Ray actor): paths and settings only."""

    base: str | None
    specialists: tuple[str, ...]
    domains: tuple[str, ...]
    levels: tuple[int, ...]
    items_per_level: int
    seed: int
    batch_size: int
    objective: str
    space: SearchSpace
    layers_per_group: int
    device: str = "cpu"
    split_modules: bool = False

    def build(self, loaded: Mapping[str, tuple] | None = None) -> ValidationFitness:
        """The fitness function; `loaded` maps paths to already loaded (model, tokenizer) to avoid reloading."""
        from ...models import load_model

        loaded = dict(loaded or {})

        def get(path):
            if path not in loaded:
                # merges are computed in float32 on the CPU; the candidate model then runs on `device`
                loaded[path] = load_model(path, device="cpu", dtype="float32")
            return loaded[path]

        spec_models = [get(p) for p in self.specialists]
        model0, tokenizer = spec_models[0]
        base_sd = mergeable_state_dict(get(self.base)[0]) if self.base else mergeable_state_dict(model0)
        grouping = LayerGrouping(model0.config.num_hidden_layers, self.layers_per_group, self.split_modules)
        builder = RecipeBuilder(base_sd, [mergeable_state_dict(m) for m, _ in spec_models], model0.config, self.space,
                                grouping, device=self.device)
        tasks = domain_tasks(self.domains, self.levels, "val", self.items_per_level, self.seed)
        return ValidationFitness(builder, tokenizer, tasks, self.batch_size, self.objective)
