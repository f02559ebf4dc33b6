"""What a bake trains returns to a plain model: a LoRA folds back into the same class; a ternary model's latent
weights are trained through the straight-through estimator and the model stays ternary."""

from __future__ import annotations

import copy

import pytest
import torch

from agent_forge.errors import ForgeError
from agent_forge.models import Agent, save_agent
from agent_forge.models.formats.ternary import bitlinear_layers, convert_to_bitlinear, is_ternary
from agent_forge.training.bake_weights import BakeWeights
from agent_forge.training.baking import bake, sample_examples, teacher_targets

PATTERN = r"\.(self_attn|mlp)\.\w+_proj$"


def _examples(model, tok):
    xs = ["abc", "de", "fgh", "a"]
    return sample_examples(model, tok, ["zz" + x for x in xs], xs, samples=2, temperature=1.0, max_new_tokens=6,
                           seed=0)


def test_a_baked_lora_folds_back_to_a_plain_model_of_the_same_class(tiny_model, tiny_tokenizer):
    entering_keys = set(tiny_model.state_dict())
    cls = type(tiny_model)
    teacher = copy.deepcopy(tiny_model)
    examples = _examples(teacher, tiny_tokenizer)
    weights = BakeWeights.prepare(tiny_model, method="auto", pattern=PATTERN, rank=4, alpha=8)
    assert weights.method == "lora" and all("lora" in n for n in weights.named)
    bake(weights.model, tiny_tokenizer, examples, teacher_targets(teacher, tiny_tokenizer, examples),
         params=list(weights.named.values()), steps=5, batch_size=4, lr=1e-2)
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        wrapped = weights.model(input_ids=ids).logits
    folded = weights.fold()
    assert type(folded) is cls
    assert set(folded.state_dict()) == entering_keys
    assert not any("lora" in n for n, _ in folded.named_modules())
    with torch.no_grad():
        plain = folded(input_ids=ids).logits
        entering = teacher(input_ids=ids).logits
    assert torch.allclose(plain, wrapped, atol=1e-5)
    assert not torch.allclose(plain, entering, atol=1e-5)  # the bake changed something, and the fold kept it


def test_a_ternary_model_stays_ternary(tiny_model, tiny_tokenizer, tmp_path):
    convert_to_bitlinear(tiny_model)
    assert is_ternary(tiny_model)
    teacher = copy.deepcopy(tiny_model)
    examples = _examples(teacher, tiny_tokenizer)
    with pytest.raises(ForgeError, match="latent"):
        BakeWeights.prepare(copy.deepcopy(tiny_model), method="lora", pattern=PATTERN)
    codes_before = {n: m.ternary()[0].clone() for n, m in bitlinear_layers(tiny_model).items()}
    weights = BakeWeights.prepare(tiny_model, method="auto", pattern=PATTERN, frozen=["model.layers.0.mlp.up_proj.weight"])
    assert weights.method == "latent" and "model.layers.0.mlp.up_proj.weight" not in weights.named
    frozen_before = tiny_model.model.layers[0].mlp.up_proj.weight.detach().clone()
    bake(weights.model, tiny_tokenizer, examples, teacher_targets(teacher, tiny_tokenizer, examples),
         params=list(weights.named.values()), steps=20, batch_size=4, lr=5e-2)
    folded = weights.fold()
    assert is_ternary(folded)
    assert torch.equal(folded.model.layers[0].mlp.up_proj.weight, frozen_before)
    changed = sum(not torch.equal(codes_before[n], m.ternary()[0]) for n, m in bitlinear_layers(folded).items())
    assert changed > 0  # the straight-through estimator moved latent weights across quantization thresholds
    for layer in bitlinear_layers(folded).values():
        w = layer.effective_weight()
        gamma = layer.ternary()[1]
        assert torch.all((w == 0) | torch.isclose(w.abs(), gamma.expand_as(w)))
    save_agent(Agent(folded, tiny_tokenizer), tmp_path / "baked")  # refuses a partly full-precision model


def test_no_matching_layer_is_a_one_line_error(tiny_model):
    with pytest.raises(ForgeError, match="no linear layer matches"):
        BakeWeights.prepare(tiny_model, method="auto", pattern=r"nothing_here$")
