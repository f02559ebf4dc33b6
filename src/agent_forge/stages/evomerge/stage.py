"""Stage 1.1 (EvoMerge) entry point: evolve a merge recipe of the seed specialists and save the champion.

Steps: load the base and specialists and refuse unmergeable ones before any work; search recipes (genetic
algorithm, or CMA-ES) scored on the validation split, the genetic algorithm's first generation holding the
original design's eight combinations, the uniform average and task arithmetic over every non-empty subset of
the specialists (each parent itself, the pairs, all of them), so the champion is never worse than a parent on
validation; save it as `model/`; evaluate the champion,
each specialist, the base and the uniform linear average on the test split (never used for selection) and
print the table; record the champion's recipe, the history and where the lineage and plot are.

The search checkpoints after every generation into `<run>/.resume/<stage dir name>/` (the pipeline deletes an
unfinished stage directory before rerunning it, so the checkpoint lives beside it); a resumed run continues
from the last finished generation. Exercise: `agent-forge run --config tiny` (after the seed stage)
or `python -m pytest tests/stages/evomerge/test_stage.py`.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import torch

from ...errors import ForgeError
from ...evaluation import evaluate
from ...evaluation.table import accuracy_table
from ...models import load_model, save_model
from ...models.compat import check_mergeable
from ...utils import digest
from ...stage_contract import StageContext, StageInputs, StageResult
from .cmaes import CmaStrategy
from .engine import LINEAGE_NAME, PLOT_NAME, Evolution, LoopSettings
from .fitness import FitnessSpec, domain_tasks
from .ga import GASettings, GeneticStrategy
from .groups import LayerGrouping
from .operators import MutationRates
from .population import LocalEvaluator, RayEvaluator
from .recipe import Recipe, describe
from .space import SearchSpace


def _inputs(inputs: StageInputs) -> tuple[str | None, dict[str, str]]:
    specialists = {k[len("specialist_"):]: str(p) for k, p in inputs.models.items() if k.startswith("specialist_")}
    if len(specialists) < 2:
        raise ForgeError(f"evomerge needs at least two 'specialist_<name>' models from the seed stage, got {sorted(inputs.models)}")
    base = inputs.models.get("base")
    return (str(base) if base is not None else None), specialists


def _fingerprint(ec, seed: int, models: dict[str, torch.nn.Module]) -> str:
    """Identifies the search: settings, seed and the input weights (a checkpoint of other inputs is discarded)."""
    def summary(key: str, tensor: torch.Tensor) -> str:
        t = tensor.detach().float()
        return f"{key}:{tuple(t.shape)}:{t.sum().item():.6e}:{t.abs().sum().item():.6e}"

    weights = {name: [summary(k, v) for k, v in model.state_dict().items()] for name, model in models.items()}
    return digest({"cfg": ec.model_dump(mode="json"), "seed": seed, "weights": weights})


def uniform_linear(space: SearchSpace) -> Recipe:
    """The plain average of the specialists: the baseline a merge has to beat."""
    return Recipe(interp=space.default_step("linear", False))


def task_vector_subsets(space: SearchSpace) -> list[Recipe]:
    """Task arithmetic with weight 1 on each non-empty subset of the specialists and 0 on the rest.

    The singletons are the parents themselves (so the champion never scores below the best parent on the
    validation split), the full set is plain task arithmetic, and the subsets between them are the merges
    that leave out a specialist whose task vector clashes with the others'. Evolution refines from there.
    """
    import itertools

    recipes = []
    for size in range(1, space.num_models + 1):
        for subset in itertools.combinations(range(space.num_models), size):
            step = space.default_step("task_arithmetic", False)
            step.params["weight"][:] = 0.0
            step.params["weight"][list(subset)] = 1.0
            recipes.append(Recipe(vector=step))
    return recipes


def run(ctx: StageContext) -> StageResult:
    cfg, stage_dir, console = ctx.cfg, ctx.stage_dir, ctx.console
    ec = cfg.evomerge
    started = time.perf_counter()
    base_path, specialist_paths = _inputs(ctx.inputs)
    loaded = {p: load_model(p, device="cpu", dtype="float32") for p in [*([base_path] if base_path else []), *specialist_paths.values()]}
    names = {**({"base": base_path} if base_path else {}), **{f"specialist_{n}": p for n, p in specialist_paths.items()}}
    check_mergeable({n: loaded[p][0] for n, p in names.items()}, {n: loaded[p][1] for n, p in names.items()})

    first_model, tokenizer = loaded[next(iter(specialist_paths.values()))]
    num_layers = first_model.config.num_hidden_layers
    grouping = LayerGrouping(num_layers, ec.layers_per_group, ec.split_modules)
    vector_methods = tuple(ec.vector_methods) if base_path else ()
    if not base_path and not ec.interp_methods:
        raise ForgeError("evomerge: task-vector methods need the specialists' common base (seed_stage.base); "
                         "without it enable evomerge.interp_methods")
    space = SearchSpace(num_models=len(specialist_paths), num_layers=num_layers, num_groups=grouping.num_groups,
                        dfs_repeats=ec.dfs_repeats, max_depth_factor=ec.max_depth_factor,
                        interp_methods=tuple(ec.interp_methods), vector_methods=vector_methods,
                        layer_kinds=tuple(ec.layer_kinds))
    domains = tuple(ec.domains or cfg.seed_stage.specialists)
    device = ctx.device.type
    spec = FitnessSpec(base=base_path, specialists=tuple(specialist_paths.values()), domains=domains,
                       levels=tuple(ec.levels), items_per_level=ec.val_items_per_level, seed=cfg.seed,
                       batch_size=ec.batch_size, objective=ec.objective, space=space,
                       layers_per_group=ec.layers_per_group, device=device, split_modules=ec.split_modules,
                       keep_share=ec.keep_share)
    fitness = spec.build(loaded)
    builder = fitness.builder

    seed = ctx.seed
    if ec.optimizer == "cmaes":
        template_step = space.default_step(ec.cmaes_method, False)
        template = Recipe(interp=template_step) if ec.cmaes_method in ("linear", "slerp") else Recipe(vector=template_step)
        strategy = CmaStrategy(space, template, ec.population_size, ec.cmaes_sigma, seed)
    else:
        given = [uniform_linear(space)] if "linear" in space.interp_methods else []
        if "task_arithmetic" in space.vector_methods:
            given += task_vector_subsets(space)
        strategy = GeneticStrategy(space, GASettings(
            population_size=ec.population_size, elite=ec.elite, tournament_size=ec.tournament_size,
            crossover_rate=ec.crossover_rate, seed_combinations=ec.seed_combinations,
            rates=MutationRates(**ec.mutation.model_dump())), extra_initial=given)
    evaluator = (RayEvaluator(spec.build, num_actors=ec.ray_actors, num_gpus_per_actor=1.0 if device == "cuda" else 0.0,
                              address=ec.ray_address)
                 if ec.backend == "ray" else LocalEvaluator(fitness))
    search_dir = ctx.scratch_dir
    fingerprint = _fingerprint(ec, cfg.seed, {n: loaded[p][0] for n, p in names.items()})
    try:
        result = Evolution(space, strategy, evaluator, LoopSettings(ec.generations, ec.patience, seed), search_dir,
                           fingerprint=fingerprint).run()
    finally:
        evaluator.close()
    search_seconds = time.perf_counter() - started

    champion = builder.fresh_model(result.best.recipe)
    save_model(champion, tokenizer, stage_dir / "model")
    for name in (LINEAGE_NAME, PLOT_NAME):
        if (search_dir / name).exists():
            shutil.copy2(search_dir / name, stage_dir / name)

    # the report: test split only, which selection never saw
    test_tasks = domain_tasks(domains, cfg.seed_stage.eval_levels, "test", cfg.seed_stage.eval_items_per_level, cfg.seed)
    contenders = {"champion": champion, "uniform_linear": builder.fresh_model(uniform_linear(space))}
    contenders.update({f"specialist_{n}": loaded[p][0] for n, p in specialist_paths.items()})
    if base_path:
        contenders["base"] = loaded[base_path][0]
    reports = {name: evaluate(model, tokenizer, test_tasks, batch_size=ec.batch_size) for name, model in contenders.items()}
    console.print(accuracy_table(reports, title="evomerge: test accuracy (%) by domain and level"))
    test_mean = {name: float(np.mean([r.by_domain.get(d, 0.0) for d in domains])) for name, r in reports.items()}
    specialists_best = max(test_mean[f"specialist_{n}"] for n in specialist_paths)
    console.print(f"evomerge: champion {result.best.recipe.label()} — test mean over {list(domains)}: "
                  f"{test_mean['champion']:.1f} (best specialist {specialists_best:.1f}, "
                  f"uniform linear {test_mean['uniform_linear']:.1f}); {result.evaluations} evaluations, "
                  f"stopped: {result.stop_reason}")
    metrics = {
        "champion": {
            "label": result.best.recipe.label(), "id": result.best.id, "generation": result.best.generation,
            "recipe": describe(result.best.recipe, grouping.labels()),
            "val_fitness": result.best.fitness.to_json(),
        },
        "test_mean_over_domains": {k: round(v, 2) for k, v in test_mean.items()},
        "beats_every_specialist": test_mean["champion"] > specialists_best,
        "beats_uniform_linear": test_mean["champion"] > test_mean["uniform_linear"],
        "eval": {name: report.to_dict() for name, report in reports.items()},
        "domains": list(domains),
        "history": result.history,
        "stop_reason": result.stop_reason,
        "evaluations": result.evaluations,
        "search_seconds": round(search_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "lineage": LINEAGE_NAME, "plot": PLOT_NAME if result.plot_path else None,
        "optimizer": ec.optimizer, "backend": ec.backend,
    }
    return StageResult(models={"model": stage_dir / "model"}, metrics=metrics)
