"""Building models from recipes: the steps compose as documented, reused skeletons leak nothing, ties hold.

Run: `python -m pytest tests/stages/evomerge/test_build.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from agent_forge.errors import ForgeError
from agent_forge.stages.evomerge.build import RecipeBuilder, mergeable_state_dict
from agent_forge.stages.evomerge.groups import LayerGrouping
from agent_forge.stages.evomerge.methods import merge_state_dicts
from agent_forge.stages.evomerge.operators import MutationRates, mutate
from agent_forge.stages.evomerge.recipe import LayerStep, Recipe
from agent_forge.stages.evomerge.space import SearchSpace

from .conftest import perturbed, tiny_llama_config

IDS = torch.tensor([[2, 7, 1, 30, 12, 5]])


def _builder(tied: bool = False):
    config = tiny_llama_config()
    config.tie_word_embeddings = tied
    torch.manual_seed(0)
    base = LlamaForCausalLM(config).eval()
    specs = [perturbed(base, 0.02, s) for s in (1, 2, 3)]
    if tied:
        for m in specs:
            m.tie_weights()
    grouping = LayerGrouping(2)
    space = SearchSpace(num_models=3, num_layers=2, num_groups=grouping.num_groups, dfs_repeats=2)
    return RecipeBuilder(mergeable_state_dict(base), [mergeable_state_dict(m) for m in specs], config, space, grouping), base, specs


def test_interp_then_vector_uses_the_interpolation_as_one_more_input():
    builder, base, specs = _builder()
    space = builder.space
    interp = space.default_step("slerp", False)
    vector = space.default_step("task_arithmetic", True)
    vector.params["weight"][:] = 0.0
    vector.params["weight"][0] = 1.0  # only the interpolation's task vector, at full weight
    both = builder.state_dict(Recipe(interp, vector))[0]
    alone = builder.state_dict(Recipe(interp))[0]
    assert max((both[k] - alone[k]).abs().max().item() for k in alone) < 1e-6
    vector.params["weight"][:] = 0.5
    mixed = builder.state_dict(Recipe(interp, vector))[0]
    sds = [mergeable_state_dict(m) for m in specs]
    expected = merge_state_dicts("task_arithmetic", [alone, *sds], {"weight": [0.5] * 4}, builder.grouping,
                                 base=mergeable_state_dict(base))
    assert max((mixed[k] - expected[k]).abs().max().item() for k in expected) < 1e-6


def test_reused_skeletons_give_the_same_model_as_a_fresh_build():
    builder, _, _ = _builder()
    rng = np.random.default_rng(0)
    wild = MutationRates(sigma=0.2, gene_rate=0.8, method_flip=0.5, structure_flip=0.5, path_edit=0.9)
    recipes = builder.space.seed_recipes(rng)
    recipes += [mutate(r, builder.space, rng, wild) for r in recipes]
    depths = set()
    with torch.no_grad():
        for recipe in recipes:
            reused = builder.model(recipe)
            depths.add(reused.config.num_hidden_layers)
            assert torch.allclose(reused(IDS).logits, builder.fresh_model(recipe)(IDS).logits, atol=1e-6), recipe.label()
    assert len(depths) > 1  # layer steps changed the depth, so several skeletons were in play


def test_tied_embeddings_stay_tied_through_every_method():
    builder, _, _ = _builder(tied=True)
    assert "lm_head.weight" not in builder.base
    for method in ("linear", "slerp"):
        model = builder.fresh_model(Recipe(interp=builder.space.default_step(method, False)))
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    for method in ("ties", "dare_ties"):
        recipe = Recipe(vector=builder.space.default_step(method, False),
                        layer=LayerStep("frankenmerge", layers=[(0, 0), (2, 1), (0, 1)]), seed=3)
        model = builder.fresh_model(recipe)
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_non_finite_inputs_are_refused_before_merging():
    config = tiny_llama_config()
    torch.manual_seed(0)
    base = LlamaForCausalLM(config).eval()
    bad = mergeable_state_dict(perturbed(base, 0.02, 1))
    bad["model.layers.1.mlp.up_proj.weight"] = bad["model.layers.1.mlp.up_proj.weight"].clone()
    bad["model.layers.1.mlp.up_proj.weight"][0, 0] = float("inf")
    grouping = LayerGrouping(2)
    space = SearchSpace(num_models=2, num_layers=2, num_groups=grouping.num_groups)
    with pytest.raises(ForgeError, match="bad one has non-finite values in model.layers.1.mlp.up_proj.weight"):
        RecipeBuilder(mergeable_state_dict(base), [mergeable_state_dict(base), bad], config, space, grouping,
                      labels=["good", "bad one"])
