"""Recipes and their variation operators: valid by construction, serialisable, reproducible.

Run: `python -m pytest tests/stages/evomerge/test_recipe.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent_forge.errors import ForgeError
from agent_forge.stages.evomerge.methods.slerp import linear_weights_to_chain_t
from agent_forge.stages.evomerge.operators import (
    MutationRates,
    chain_t_to_linear_weights,
    convert_step,
    crossover,
    diversity,
    mutate,
)
from agent_forge.stages.evomerge.recipe import LayerStep, Recipe
from agent_forge.stages.evomerge.space import SearchSpace

SPACE = SearchSpace(num_models=3, num_layers=4, num_groups=6, dfs_repeats=2)
WILD = MutationRates(sigma=0.3, gene_rate=0.8, method_flip=0.5, structure_flip=0.5, path_edit=0.9, reseed=0.5)


def test_seed_recipes_are_the_eight_combinations():
    recipes = SPACE.seed_recipes(np.random.default_rng(0))
    labels = [r.label() for r in recipes]
    assert len(set(labels)) == 8
    assert {tuple(lbl.split("+")) for lbl in labels} == {
        (i, v, k) for i in ("linear", "slerp") for v in ("ties", "dare_ties") for k in ("frankenmerge", "dfs")}
    for r in recipes:
        SPACE.validate(r)
        assert r.vector.params["weight"].shape == (4, 6)  # the interpolation joins the three specialists as row 0


def test_random_mutated_and_crossed_recipes_stay_valid_and_parents_untouched():
    rng = np.random.default_rng(1)
    population = [SPACE.random_recipe(rng) for _ in range(12)] + SPACE.seed_recipes(rng)
    for _ in range(300):
        a, b = (population[int(i)] for i in rng.integers(len(population), size=2))
        before = (a.key(), b.key())
        child = mutate(crossover(a, b, SPACE, rng), SPACE, rng, WILD)
        SPACE.validate(child)
        assert (a.key(), b.key()) == before
        population.append(child)
    labels = {r.label() for r in population}
    assert any("frankenmerge" in x for x in labels) and any("dfs" in x for x in labels)
    assert any(x in labels for x in ("task_arithmetic", "ties", "dare_linear"))


def test_json_round_trip_keeps_recipes_equal():
    rng = np.random.default_rng(2)
    for _ in range(30):
        recipe = mutate(SPACE.random_recipe(rng), SPACE, rng, WILD)
        again = Recipe.from_json(recipe.to_json())
        assert again.key() == recipe.key()
        for name in ("interp", "vector"):
            step, other = getattr(recipe, name), getattr(again, name)
            if step is not None:
                for p in step.params:
                    assert np.array_equal(step.params[p], other.params[p])


def test_operators_are_deterministic_for_a_seed():
    def children(seed):
        rng = np.random.default_rng(seed)
        pop = SPACE.seed_recipes(rng)
        return [mutate(crossover(pop[i], pop[-1 - i], SPACE, rng), SPACE, rng, WILD).key() for i in range(8)]

    assert children(5) == children(5) and children(5) != children(6)


def test_linear_and_slerp_parameters_convert_both_ways():
    w = np.array([[0.2, 1.0], [0.5, 0.5], [0.3, 0.0]])
    t = np.stack([linear_weights_to_chain_t(w[:, g]) for g in range(2)], axis=1)
    assert np.allclose(chain_t_to_linear_weights(t), w / w.sum(axis=0))
    step = SPACE.default_step("linear", False)
    step.params["weight"][:] = np.array([[0.2], [0.5], [0.3]])
    slerp = convert_step(step, "slerp", SPACE, False)
    back = convert_step(slerp, "linear", SPACE, False)
    assert np.allclose(back.params["weight"], step.params["weight"])


def test_vector_method_flip_keeps_weights_and_adds_densities():
    step = SPACE.default_step("task_arithmetic", False)
    step.params["weight"][:] = 0.42
    ties = convert_step(step, "ties", SPACE, False)
    assert np.all(ties.params["weight"] == 0.42) and ties.params["density"].shape == (3, 6)


def test_frankenmerge_layers_round_trip_as_slices():
    layer = LayerStep("frankenmerge", layers=[(0, 0), (0, 1), (2, 1), (2, 2), (1, 3), (0, 2)])
    assert layer.slices() == [(0, 0, 2), (2, 1, 3), (1, 3, 4), (0, 2, 3)]
    assert LayerStep.from_json(layer.to_json()).layers == layer.layers


def test_diversity_is_zero_for_clones_and_positive_otherwise():
    rng = np.random.default_rng(3)
    r = SPACE.random_recipe(rng)
    assert diversity([r, r.copy(), r.copy()], SPACE) == 0.0
    assert diversity([r, mutate(r, SPACE, rng, WILD)], SPACE) > 0.0


def test_recipes_that_do_not_fit_are_refused():
    with pytest.raises(ForgeError, match="parameter-space step"):
        SPACE.validate(Recipe())
    wrong = Recipe(vector=SearchSpace(3, 4, 5).default_step("ties", False))
    with pytest.raises(ForgeError, match="must have shape"):
        SPACE.validate(wrong)
    deep = Recipe(vector=SPACE.default_step("ties", False), layer=LayerStep("frankenmerge", layers=[(0, 0)] * 7))
    with pytest.raises(ForgeError, match="depth must be"):
        SPACE.validate(deep)
    with pytest.raises(ForgeError, match="at least two specialists"):
        SearchSpace(num_models=1, num_layers=4, num_groups=6)
