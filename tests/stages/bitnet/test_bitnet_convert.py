"""Conversion to BitLinear, the ternary helpers, and saving/reloading a ternary model with its latent weights."""

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from agent_forge.errors import ForgeError
from agent_forge.models.formats.ternary import (
    BitLinear,
    bitlinear_layers,
    convert_to_bitlinear,
    is_ternary,
    is_ternary_checkpoint,
    keep_ternary,
    restore_bitlinear,
    set_quant_strength,
)


def test_every_decoder_linear_is_converted_and_the_head_is_not(llama):
    names = convert_to_bitlinear(llama)
    assert len(names) == 2 * 7  # q k v o gate up down per layer
    assert isinstance(llama.lm_head, nn.Linear) and not isinstance(llama.lm_head, BitLinear)
    assert isinstance(llama.model.embed_tokens, nn.Embedding)
    assert is_ternary(llama)


def test_every_converted_weight_is_ternary_times_its_scale(llama):
    convert_to_bitlinear(llama)
    for layer in bitlinear_layers(llama).values():
        codes, gamma = layer.ternary()
        w = layer.effective_weight()
        assert set(torch.unique(w / gamma).round().tolist()) <= {-1.0, 0.0, 1.0}
        assert torch.allclose(w, codes.float() * gamma)


def test_exclusion_patterns(llama, make_llama):
    names = convert_to_bitlinear(llama, exclude=["lm_head", "*.mlp.*"])
    assert all("self_attn" in n for n in names) and len(names) == 8
    with pytest.raises(ForgeError, match="no linear layers"):
        convert_to_bitlinear(make_llama(), exclude=["*"])


def test_a_head_tied_to_the_embedding_must_stay_excluded(make_llama):
    model = make_llama(tie=True)
    with pytest.raises(ForgeError, match="tied"):
        convert_to_bitlinear(model, exclude=[])
    assert convert_to_bitlinear(model)  # the default exclusion keeps the head (and so the embedding) fp


def test_strength_zero_keeps_the_model_function_and_is_not_ternary(llama, token_ids):
    with torch.no_grad():
        before = llama(token_ids).logits
        convert_to_bitlinear(llama, strength=0.0)
        assert torch.equal(llama(token_ids).logits, before)
    assert not is_ternary(llama)
    set_quant_strength(llama, 1.0)
    assert is_ternary(llama)
    with pytest.raises(ValueError):
        set_quant_strength(llama, 1.5)


def test_keep_ternary_converts_layers_added_later_and_restores_full_strength(llama, make_llama):
    convert_to_bitlinear(llama)
    set_quant_strength(llama, 0.3)
    llama.model.layers[0].mlp.extra_proj = nn.Linear(32, 32)  # a stage bolted a layer on
    assert not is_ternary(llama)
    added = keep_ternary(llama)
    assert added == ["model.layers.0.mlp.extra_proj"]
    assert is_ternary(llama)
    assert "model.layers.0.mlp.extra_proj" in llama.config.forge_bitnet["modules"]
    with pytest.raises(ForgeError, match="never converted"):
        keep_ternary(make_llama())


@pytest.mark.parametrize("sub_norm", [False, True])
def test_saved_and_reloaded_ternary_model_gives_identical_logits(tmp_path, token_ids, sub_norm, make_llama):
    model = make_llama()
    convert_to_bitlinear(model, sub_norm=sub_norm)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rms_norm" in name:
                p.uniform_(0.5, 1.5)  # a trained sub-norm differs from its init, so it must really be saved
        expected = model(token_ids).logits
    model.save_pretrained(tmp_path)

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # what load_model does underneath
    assert is_ternary_checkpoint(loaded.config)
    assert not is_ternary(loaded)  # a plain loader gives plain linears...
    assert restore_bitlinear(loaded, tmp_path)  # ...until the layers are restored
    assert is_ternary(loaded)
    with torch.no_grad():
        assert torch.equal(loaded(token_ids).logits, expected)
    # latent weights (not just their ternary image) survive, so training can continue where it stopped
    for name, layer in bitlinear_layers(model).items():
        assert torch.equal(loaded.get_submodule(name).weight, layer.weight)


def test_restore_is_a_no_op_for_an_ordinary_model(tmp_path, llama):
    llama.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert not is_ternary_checkpoint(loaded.config)
    assert restore_bitlinear(loaded, tmp_path) is False
    assert not bitlinear_layers(loaded)


def test_restore_reports_missing_sub_norm_weights(tmp_path, make_llama):
    model = make_llama()
    convert_to_bitlinear(model, sub_norm=True)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(ForgeError, match="sub-layer norm"):
        restore_bitlinear(loaded, tmp_path / "elsewhere")


def test_training_a_restored_model_updates_latent_weights_and_stays_ternary(tmp_path, token_ids, make_llama):
    model = make_llama()
    convert_to_bitlinear(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    restore_bitlinear(loaded, tmp_path)
    layer = loaded.model.layers[0].mlp.up_proj
    before = layer.weight.detach().clone()
    opt = torch.optim.AdamW(loaded.parameters(), lr=1e-2)
    loaded.train()
    loaded(token_ids, labels=token_ids).loss.backward()
    opt.step()
    assert not torch.equal(layer.weight.detach(), before)
    assert is_ternary(loaded)
    codes, gamma = layer.ternary()
    assert torch.allclose(layer.effective_weight(), codes.float() * gamma)
