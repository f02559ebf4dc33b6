"""A latent ternary agent and its packed export compute the same logits bit for bit (no-grad, fp32).

The latent BitLinear's no-grad forward is the packed kernels' integer arithmetic, so evaluating an agent before
and after `save_agent(..., packed=True)` gives the same scores item for item, not only within tolerance.
"""

import copy

import pytest
import torch
from torch import nn

from agent_forge.models import Agent, load_agent, save_agent
from agent_forge.models.formats.ternary import BitLinear, convert_to_bitlinear, kernel
from agent_forge.models.formats.ternary.packing import pack_kernel


@pytest.mark.parametrize("variant", sorted(kernel.VARIANTS))
@pytest.mark.parametrize("k,n,m", [(32, 48, 1), (576, 192, 2), (576, 1536, 4), (300, 33, 7)])
def test_the_no_grad_forward_is_the_kernel_bit_for_bit(variant, k, n, m):
    torch.manual_seed(k + n + m)
    layer = BitLinear.from_linear(nn.Linear(k, n, bias=True))
    nn.init.normal_(layer.bias)
    codes, gamma = layer.ternary()
    x = torch.randn(m, k) * 3
    packed = kernel.TernaryMatmul(pack_kernel(codes), float(gamma), k, layer.bias.detach(), variant=variant)(x)
    with torch.no_grad():
        latent = layer(x)
    assert torch.equal(latent, packed)
    # with gradients the straight-through form runs: the same values up to float rounding
    straight = layer(x)
    assert straight.requires_grad and torch.allclose(straight, latent, rtol=1e-5, atol=1e-5)


def test_a_packed_export_scores_the_same_logits_as_the_latent_agent(tiny_model, tiny_tokenizer, tmp_path):
    convert_to_bitlinear(tiny_model, sub_norm=True)
    with torch.no_grad():  # give the sub-layer norms some non-trivial weights
        for module in tiny_model.modules():
            if isinstance(module, BitLinear) and module.rms_norm is not None:
                module.rms_norm.weight.uniform_(0.5, 1.5)
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer)), tmp_path / "packed", packed=True)
    packed = load_agent(tmp_path / "packed")
    assert packed.packed
    ids = torch.randint(3, 30, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(tiny_model(ids).logits, packed.model(ids).logits)


def _survives_a_reciprocal_round_trip(gamma: torch.Tensor) -> bool:
    return torch.equal(torch.tensor(1.0 / float((1.0 / gamma).float()), dtype=torch.float32), gamma)


def test_the_export_keeps_each_layers_gamma_exactly(tiny_model, tiny_tokenizer, tmp_path):
    """transformers' layout stores 1 / gamma; about one gamma in eight comes back one ulp off from it, which
    would put the packed model one rounding away from the latent one. The export stores gamma itself too."""
    from agent_forge.models.formats.ternary.packed import unpack_export_codes

    convert_to_bitlinear(tiny_model)
    layers = [m for m in tiny_model.modules() if isinstance(m, BitLinear)]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in layers:  # scale each weight until its gamma is one of those that do not come back exactly
            while _survives_a_reciprocal_round_trip(layer.ternary()[1]):
                layer.weight.mul_(1.0 + 1e-3 * float(torch.rand((), generator=generator)))
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer)), tmp_path / "packed", packed=True)
    stored = unpack_export_codes(tmp_path / "packed")
    names = {m: n for n, m in tiny_model.named_modules()}
    assert all(stored[names[layer]][1] == float(layer.ternary()[1]) for layer in layers)
    packed = load_agent(tmp_path / "packed")
    ids = torch.randint(3, 30, (2, 11), generator=generator)
    with torch.no_grad():
        assert torch.equal(tiny_model(ids).logits, packed.model(ids).logits)
