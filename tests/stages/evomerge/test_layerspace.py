"""Frankenmerge and DFS build plain, loadable models that compute exactly the layer path they describe.

The reference is hand-built: the source models' own decoder layers called one after another on the hidden
state (scaled before each layer for DFS), then the primary's final norm and head.
Run: `python -m pytest tests/stages/evomerge/test_layerspace.py`.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaForCausalLM
from transformers.masking_utils import create_causal_mask

from agent_forge.errors import ForgeError
from agent_forge.stages.evomerge.dfs import dfs_merge, dfs_path, identity_indicator, slot_layers
from agent_forge.stages.evomerge.frankenmerge import frankenmerge, frankenmerge_path
from agent_forge.stages.evomerge.stacking import LayerRef, instantiate

from .conftest import perturbed, tiny_llama_config

IDS = torch.tensor([[3, 17, 5, 9, 22, 1, 30, 4, 11, 2]])


@torch.no_grad()
def reference_logits(models, path: list[LayerRef], ids=IDS) -> torch.Tensor:
    primary = models[0].model
    hidden = primary.embed_tokens(ids)
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    rotary = primary.rotary_emb(hidden, position_ids=positions)
    mask = create_causal_mask(config=models[0].config, inputs_embeds=hidden, attention_mask=None, cache=None,
                              position_ids=positions)
    for ref in path:
        layer = models[ref.source].model.layers[ref.layer]
        hidden = layer(hidden * ref.scale, attention_mask=mask, position_embeddings=rotary, position_ids=positions)
    return models[0].lm_head(primary.norm(hidden))


def _round_trip(state_dict, config, tmp_path):
    instantiate(config, state_dict).save_pretrained(tmp_path)
    return AutoModelForCausalLM.from_pretrained(tmp_path).eval()


def test_frankenmerge_of_several_models_with_a_new_depth_matches_the_reference(tiny_family, tmp_path):
    base, specs = tiny_family
    models = [base, *specs]
    slices = [(0, 0, 2), (2, 1, 2), (1, 0, 2), (3, 1, 2)]
    sd, config = frankenmerge([m.state_dict() for m in models], base.config, slices)
    loaded = _round_trip(sd, config, tmp_path)
    assert loaded.config.num_hidden_layers == 6 and type(loaded) is type(base)
    with torch.no_grad():
        got = loaded(IDS).logits
    assert torch.allclose(got, reference_logits(models, frankenmerge_path(slices)), atol=1e-5)
    # and it differs from the primary model alone, so the comparison above is not vacuous
    assert not torch.allclose(got, base(IDS).logits, atol=1e-3)


@pytest.mark.parametrize("eps,atol", [(1e-6, 2e-4), (1e-30, 1e-6)])
def test_dfs_path_with_scales_and_repeats_matches_the_reference(tmp_path, eps, atol):
    """With the model's RMSNorm epsilon the fold is exact to ~eps/mean-square(hidden) (random-init hidden states
    are tiny, so that is ~1e-3 relative here); with epsilon -> 0 it is exact to float rounding."""
    config = tiny_llama_config()
    config.rms_norm_eps = eps
    torch.manual_seed(0)
    base = LlamaForCausalLM(config).eval()
    models = [base, *(perturbed(base, 0.02, seed) for seed in (1, 2, 3))]
    depths, repeats = [2, 2, 2, 2], 2
    slots = len(slot_layers(depths, repeats))
    assert slots == 16  # T = total layers (8) x r (2)
    gen = torch.Generator().manual_seed(0)
    indicator = (torch.rand(slots, generator=gen) < 0.5).tolist()
    indicator[0] = indicator[9] = True
    scales = (0.6 + 0.9 * torch.rand(slots, generator=gen)).tolist()
    sd, new_config = dfs_merge([m.state_dict() for m in models], base.config, repeats, indicator, scales)
    loaded = _round_trip(sd, new_config, tmp_path)
    path = dfs_path(depths, repeats, indicator, scales)
    assert loaded.config.num_hidden_layers == len(path) == sum(indicator)
    with torch.no_grad():
        got = loaded(IDS).logits
    expected = reference_logits(models, path)
    assert (got - expected).abs().max().item() < atol
    unscaled = reference_logits(models, [LayerRef(r.source, r.layer) for r in path])
    assert not torch.allclose(expected, unscaled, atol=1e-2)


def test_identity_dfs_path_is_the_primary_model(tiny_family):
    base, specs = tiny_family
    depths = [2] * 4
    indicator = identity_indicator(depths, 2)
    sd, config = dfs_merge([m.state_dict() for m in [base, *specs]], base.config, 2, indicator, [1.0] * 16)
    with torch.no_grad():
        assert torch.equal(instantiate(config, sd)(IDS).logits, base(IDS).logits)


def test_stacked_model_generates_with_kv_cache_like_without(tiny_family):
    """Every later stage generates with a KV cache: the renumbered layers must index the cache correctly."""
    base, specs = tiny_family
    sd, config = frankenmerge([base.state_dict(), specs[0].state_dict()], base.config, [(0, 0, 2), (1, 0, 2), (0, 1, 2)])
    model = instantiate(config, sd)
    with torch.no_grad():
        cached = model.generate(IDS, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
        uncached = model.generate(IDS, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(cached, uncached)


def test_frankenmerge_works_for_another_family_but_dfs_scales_are_refused_there(tmp_path):
    config = GPTNeoXConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    a, b = GPTNeoXForCausalLM(config).eval(), GPTNeoXForCausalLM(config).eval()
    sd, new_config = frankenmerge([a.state_dict(), b.state_dict()], config, [(0, 0, 2), (1, 1, 2)])
    loaded = _round_trip(sd, new_config, tmp_path)
    assert loaded.config.num_hidden_layers == 3 and loaded.config.model_type == "gpt_neox"
    with pytest.raises(ForgeError, match="folded exactly only"):
        dfs_merge([a.state_dict(), b.state_dict()], config, 1, [True, True, True, False], [1.0, 1.3, 1.0, 1.0])


def test_bad_layer_paths_are_clear_errors(tiny_family):
    base, specs = tiny_family
    sds = [base.state_dict(), specs[0].state_dict()]
    with pytest.raises(ForgeError, match="is empty"):
        frankenmerge(sds, base.config, [(0, 1, 1)])
    with pytest.raises(ForgeError, match="only 2 models"):
        frankenmerge(sds, base.config, [(5, 0, 1)])
    with pytest.raises(ForgeError, match="which has 2"):
        frankenmerge(sds, base.config, [(1, 0, 3)])
    with pytest.raises(ForgeError, match="at least one layer"):
        dfs_merge(sds, base.config, 1, [False] * 4, [1.0] * 4)
    with pytest.raises(ForgeError, match="must be positive"):
        dfs_merge(sds, base.config, 1, [True] * 4, [1.0, -1.0, 1.0, 1.0])
    with pytest.raises(ForgeError, match="needs 4 indicator"):
        dfs_merge(sds, base.config, 1, [True] * 3, [1.0] * 3)
