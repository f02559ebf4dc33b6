"""Fitness of a recipe: exact match on the validation split (evaluation fast path), log-likelihood as tie-breaker.

Accuracies, and so the fitness score, are percentages (0-100) like every accuracy in the project.

`FitnessSpec` is the picklable description (model paths, domains, levels, items, seed) from which a
`ValidationFitness` is built in this process or inside a Ray actor, identically. `score_by_domain` is shared with
the stage's test-split report so both use one definition of "mean over domains".

Objectives (`evomerge.objective`): `mean` over domains; `balanced`, the mean and the worst domain halved;
`retain`, the mean minus one point for every percent by which a specialist's own-domain gain over the base
falls short of `keep_share` (share kept = (merge_d - base_d) / (specialist_d - base_d) on validation, the base
and specialists scored once). The penalty reaches tens of points, so `retain` first looks for merges that keep
every skill and then for the best mean among them. Exercise:
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


def retained_shares(accuracy: Mapping[str, float], reference: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Per specialist domain with a positive gain: the share of (specialist - base) that `accuracy` keeps."""
    return {d: (accuracy.get(d, 0.0) - base) / (spec - base) for d, (base, spec) in reference.items() if spec > base}


def objective_value(accuracy: Mapping[str, float], objective: str,
                    reference: Mapping[str, tuple[float, float]] | None = None, keep_share: float = 0.7) -> float:
    """`mean`: mean over domains. `balanced`: (mean + worst domain) / 2, which pays for keeping every skill.
    `retain`: mean minus 100 x the summed shortfall of each domain's kept share of its specialist's gain below
    `keep_share` (`reference`: domain -> (base, specialist) accuracy)."""
    values = list(accuracy.values())
    mean = sum(values) / len(values)
    if objective == "mean":
        return mean
    if objective == "balanced":
        return 0.5 * (mean + min(values))
    if reference is None:
        raise ForgeError("evomerge: objective 'retain' needs the base's and specialists' accuracies")
    shortfall = sum(max(0.0, keep_share - share) for share in retained_shares(accuracy, reference).values())
    return mean - 100.0 * shortfall


class ValidationFitness:
    """Builds a recipe's model and scores it on the validation tasks."""

    def __init__(self, builder: RecipeBuilder, tokenizer, tasks: Sequence[Task], batch_size: int, objective: str,
                 reference: Mapping[str, tuple[float, float]] | None = None, keep_share: float = 0.7):
        if not tasks:
            raise ForgeError("evomerge: no validation tasks (check evomerge.levels and val_items_per_level)")
        self.builder = builder
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.batch_size = batch_size
        self.objective = objective
        self.reference = dict(reference) if reference is not None else None
        self.keep_share = keep_share

    @torch.no_grad()
    def __call__(self, recipe: Recipe) -> Fitness:
        model = self.builder.model(recipe)
        accuracy, loglik = score_by_domain(model, self.tokenizer, self.tasks, self.batch_size)
        details = {"val_accuracy_by_domain": {d: round(a, 2) for d, a in accuracy.items()},
                   "depth": model.config.num_hidden_layers}
        if self.reference is not None:
            details["val_retained_share"] = {d: round(v, 3) for d, v in retained_shares(accuracy, self.reference).items()}
        return Fitness(score=objective_value(accuracy, self.objective, self.reference, self.keep_share),
                       tiebreak=loglik, details=details)


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
    keep_share: float = 0.7

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
        reference = None
        if self.objective == "retain":
            if not self.base or len(self.specialists) != len(self.domains):
                raise ForgeError("evomerge: objective 'retain' needs the specialists' base (seed_stage.base) and one "
                                 "specialist per domain, in the order of evomerge.domains")
            with torch.no_grad():
                base_acc, _ = score_by_domain(get(self.base)[0], tokenizer, tasks, self.batch_size)
                own = [score_by_domain(m, tokenizer, tasks, self.batch_size)[0][d]
                       for (m, _), d in zip(spec_models, self.domains)]
            reference = {d: (base_acc[d], acc) for d, acc in zip(self.domains, own)}
        return ValidationFitness(builder, tokenizer, tasks, self.batch_size, self.objective, reference, self.keep_share)
