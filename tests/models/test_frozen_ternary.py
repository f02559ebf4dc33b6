"""`frozen_ternary_weights`: a generation quantizes each BitLinear weight once, with outputs bit-identical."""

import contextlib

import pytest
import torch

from agent_forge.models import generate
from agent_forge.models.formats.ternary import BitLinear, convert_to_bitlinear, frozen_ternary_weights


def _ternary(model):
    convert_to_bitlinear(model)
    return [m for m in model.modules() if isinstance(m, BitLinear)]


@pytest.mark.parametrize("strength,held", [(1.0, "frozen_codes"), (0.5, "frozen_weight")])
def test_frozen_forward_equals_the_quantize_every_time_forward(tiny_model, strength, held):
    """Fully quantized, the block holds each layer's codes (the integer path); during warm-up, its blended weight."""
    layers = _ternary(tiny_model)
    assert layers
    for layer in layers:
        layer.strength = strength
    other = {"frozen_codes": "frozen_weight", "frozen_weight": "frozen_codes"}[held]
    ids = torch.randint(3, 30, (2, 9))
    with torch.no_grad():
        fresh = tiny_model(ids).logits
        with frozen_ternary_weights(tiny_model):
            assert all(getattr(layer, held) is not None and getattr(layer, other) is None for layer in layers)
            frozen = tiny_model(ids).logits
    # the same weight values feed the same matmuls: equal by construction, not only within tolerance
    assert torch.equal(fresh, frozen)
    assert all(layer.frozen_codes is None and layer.frozen_weight is None for layer in layers)


def test_forwards_with_gradients_quantize_afresh_and_train_the_latent_weights(tiny_model):
    layers = _ternary(tiny_model)
    ids = torch.randint(3, 30, (2, 9))
    with frozen_ternary_weights(tiny_model):
        with torch.no_grad():
            layers[0].weight.add_(1.0)  # a change the frozen copy cannot see ...
            stale = tiny_model(ids).logits
        loss = tiny_model(ids).logits.sum()  # ... but a forward with gradients does
        loss.backward()
    with torch.no_grad():
        current = tiny_model(ids).logits
    assert torch.allclose(loss, current.sum(), rtol=1e-5)
    assert not torch.equal(stale, current)
    assert layers[0].weight.grad is not None and layers[0].weight.grad.abs().sum() > 0


def test_the_block_releases_its_copies_on_error_and_leaves_an_enclosing_block_alone(tiny_model):
    layers = _ternary(tiny_model)
    with pytest.raises(RuntimeError):
        with frozen_ternary_weights(tiny_model):
            raise RuntimeError("boom")
    assert all(layer.frozen_codes is None and layer.frozen_weight is None for layer in layers)
    with frozen_ternary_weights(tiny_model):
        held = [layer.frozen_codes for layer in layers]
        with frozen_ternary_weights(tiny_model):
            pass
        assert all(layer.frozen_codes is c for layer, c in zip(layers, held))
    assert all(layer.frozen_codes is None and layer.frozen_weight is None for layer in layers)


def test_generation_quantizes_once_per_layer_and_decodes_the_same_tokens(tiny_model, tiny_tokenizer, monkeypatch):
    layers = _ternary(tiny_model)
    prompts = ["12+34", "abc", "reverse(xy)"]
    calls = []
    original = BitLinear.ternary

    def counted(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(BitLinear, "ternary", counted)
    texts = generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=12, batch_size=2, progress=False)
    assert len(calls) == len(layers)  # once per layer for both batches and every step, not once per step

    # the reference: the same greedy decode with each step quantizing afresh (no freezing)
    monkeypatch.setattr("agent_forge.models.generation.frozen_ternary_weights", lambda _model: contextlib.nullcontext())
    calls.clear()
    reference = generate(tiny_model, tiny_tokenizer, prompts, max_new_tokens=12, batch_size=2, progress=False)
    assert len(calls) > 10 * len(layers)
    assert texts == reference
