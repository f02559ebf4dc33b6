"""CMA-ES option: tunes a template's continuous genes, reproducibly, and resumes identically.

Run: `python -m pytest tests/stages/evomerge/test_cmaes.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent_forge.stages.evomerge.engine import Evolution, LoopSettings
from agent_forge.stages.evomerge.population import LocalEvaluator
from agent_forge.stages.evomerge.recipe import Recipe

from .synthetic import SPACE, TARGET, SyntheticFitness

pytest.importorskip("cma")
from agent_forge.stages.evomerge.cmaes import CmaStrategy  # noqa: E402


def _template() -> Recipe:
    return Recipe(vector=SPACE.default_step("task_arithmetic", False), seed=0)


def _run(out_dir, generations=8, seed=0, fitness=None):
    strategy = CmaStrategy(SPACE, _template(), population_size=8, sigma=0.2, seed=seed)
    loop = Evolution(SPACE, strategy, LocalEvaluator(fitness or SyntheticFitness()),
                     LoopSettings(generations=generations, patience=20, seed=seed), out_dir, fingerprint="cma",
                     progress=False, plot=False)
    return loop.run()


def _records(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def test_encode_decode_round_trip():
    strategy = CmaStrategy(SPACE, _template(), population_size=4)
    recipe = _template()
    recipe.vector.params["weight"] = np.random.default_rng(0).uniform(-0.5, 2.0, size=(3, SPACE.num_groups))
    assert np.allclose(strategy.decode(strategy.encode(recipe)).vector.params["weight"], recipe.vector.params["weight"])


def test_cmaes_approaches_the_optimum_and_is_reproducible(tmp_path):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b")
    assert _records(a.lineage_path) == _records(b.lineage_path)
    first = a.history[0]["best"]
    assert a.best.fitness.score > first + 0.02
    # moving toward TARGET: the champion's weights are closer than the template's all-ones
    w = a.best.recipe.vector.params["weight"]
    assert np.mean((w - TARGET) ** 2) < np.mean((1.0 - TARGET) ** 2)


def test_cmaes_resumes_like_an_uninterrupted_run(tmp_path):
    reference = _run(tmp_path / "ref", generations=6)

    class Crash(Exception):
        pass

    calls = {"n": 0}
    inner = SyntheticFitness()

    def crashing(recipe):
        calls["n"] += 1
        if calls["n"] == 8 * 3 + 5:  # in the middle of generation 3
            raise Crash()
        return inner(recipe)

    with pytest.raises(Crash):
        _run(tmp_path / "crash", generations=6, fitness=crashing)
    np.random.seed(12345)  # disturb the global RNG: CMA must not depend on it
    resumed = _run(tmp_path / "crash", generations=6)
    assert _records(resumed.lineage_path) == _records(reference.lineage_path)
