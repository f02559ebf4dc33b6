"""Option (b): experts as rank-r corrections beside a layer (forward hooks), and on a packed ternary bundle.

Tolerance: at full rank on an unquantized model the hook adds (h @ V diag(d)) @ U^T where the latent path
multiplies by W + U diag(d) V^T: the same function in a different summation order, so logits agree to float32
rounding (we allow 1e-4 absolute on logits of magnitude ~1).
"""

from __future__ import annotations

import copy

import pytest
import torch

from agent_forge.evaluation.report import dispatch_groups
from agent_forge.models import Agent, load_agent, save_agent
from agent_forge.models.formats.experts import (
    ExpertSet,
    Router,
    applied,
    corrected,
    decompose_model,
    dropped_share,
    held,
    load_decomposition,
    prompt_features,
    target_names,
    truncate,
    z_of,
)
from agent_forge.errors import ForgeError
from agent_forge.models.formats.ternary import convert_to_bitlinear, frozen_ternary_weights
from agent_forge.stages.experts.training import SVFPolicy
from agent_forge.models.formats.ternary.decode import PackedDecoder, decoder_for
from agent_forge.models.formats.ternary.kernel import VARIANTS

IDS = torch.tensor([[1, 5, 7, 9, 3, 11]])
TOLERANCE = 1e-4


def _random_z(decomposition, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: z_of(torch.randn(d.rank, generator=g), 2.0) for n, d in decomposition.items()}


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_full_rank_hook_matches_the_latent_path_on_an_unquantized_model(tiny_model):
    dec = decompose_model(tiny_model, target_names(tiny_model))
    z = _random_z(dec, 3)
    base = _logits(tiny_model)
    with applied(tiny_model, dec, z):
        latent = _logits(tiny_model)
    with corrected(tiny_model, dec, z):
        hooked = _logits(tiny_model)
    assert float((latent - base).abs().max()) > 1e-2  # the expert does change the model
    assert float((hooked - latent).abs().max()) <= TOLERANCE
    torch.testing.assert_close(_logits(tiny_model), base, rtol=0, atol=0)  # hooks removed: base again


def test_a_truncated_correction_is_the_rank_r_part_of_the_latent_correction(tiny_model):
    dec = decompose_model(tiny_model, target_names(tiny_model))
    z = _random_z(dec, 4)
    low = {n: truncate(d, 4) for n, d in dec.items()}
    assert all(d.kept == 4 and d.rank == dec[n].rank and d.U.shape[1] == d.V.shape[1] == 4 for n, d in low.items())
    with applied(tiny_model, low, z):  # the latent path with the same truncated factors
        latent = _logits(tiny_model)
    with corrected(tiny_model, low, z):
        hooked = _logits(tiny_model)
    assert float((hooked - latent).abs().max()) <= TOLERANCE
    for n, d in dec.items():
        assert dropped_share(d, z[n], d.rank) == 0.0
        assert 0.0 < dropped_share(d, z[n], 4) < 1.0


def test_on_a_ternary_model_the_two_applications_differ_and_only_the_correction_keeps_the_codes(tiny_model):
    """Option (a) writes W' into the latent weights and BitLinear re-quantizes it; option (b) leaves the ternary
    matmul alone and adds the full-precision correction beside it, so its effect is exactly the hook's."""
    convert_to_bitlinear(tiny_model, sub_norm=True)
    dec = decompose_model(tiny_model, target_names(tiny_model))
    z = _random_z(dec, 6)
    base = _logits(tiny_model)
    with held(tiny_model, dec, z, "weights"):
        as_weights = _logits(tiny_model)
    with held(tiny_model, dec, z, "correction"):
        as_correction = _logits(tiny_model)
        with frozen_ternary_weights(tiny_model):  # the no-grad integer path takes the same hook
            frozen = _logits(tiny_model)
    with corrected(tiny_model, dec, z):
        hooked = _logits(tiny_model)
    torch.testing.assert_close(as_correction, hooked, rtol=0, atol=0)
    assert float((frozen - as_correction).abs().max()) <= TOLERANCE
    assert float((as_correction - base).abs().max()) > 1e-2 and float((as_weights - base).abs().max()) > 1e-2
    assert float((as_correction - as_weights).abs().max()) > 1e-3  # two different functions of the same z
    torch.testing.assert_close(_logits(tiny_model), base, rtol=0, atol=0)  # both released: the base again
    with pytest.raises(ForgeError, match="unknown expert application"):
        with held(tiny_model, dec, z, "sideways"):
            pass


@pytest.mark.parametrize("application", ["weights", "correction"])
def test_an_svf_policy_starts_at_the_base_and_its_loss_reaches_the_expert(tiny_model, application):
    convert_to_bitlinear(tiny_model, sub_norm=True)
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    dec = decompose_model(tiny_model, target_names(tiny_model))
    policy = SVFPolicy(tiny_model, dec, init=0.1, max_mult=2.0, application=application)
    out = policy(input_ids=IDS).logits
    assert float((out.detach() - _logits(tiny_model)).abs().max()) <= TOLERANCE  # a constant z is the base
    out.logsumexp(-1).sum().backward()
    grads = [p.grad for p in policy.logits]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in tiny_model.parameters())  # only the expert learns
    assert not any(m._forward_hooks for m in tiny_model.modules())  # the correction hooks left with the forward


def test_a_packed_bundle_keeps_only_the_top_r_factors_and_applies_its_experts(tiny_model, tiny_tokenizer, tmp_path):
    tok = copy.deepcopy(tiny_tokenizer)
    convert_to_bitlinear(tiny_model, sub_norm=True)
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    experts = {"a": _random_z(dec, 1), "b": _random_z(dec, 2)}
    prompts = ["12+3=?", "abc reversed?", "7*2=?", "xyz upper?"]
    router = Router.fit(prompt_features(tiny_model, tok, prompts), [0, 1, 0, 1], ["a", "b"])
    found = ExpertSet(names, dec, experts, 2.0, router, 0.0, packed_rank=4)
    agent = Agent(tiny_model, tok, extensions={"experts": found})
    save_agent(agent, tmp_path / "latent")
    save_agent(agent, tmp_path / "packed", packed=True)
    latent_svd = (tmp_path / "latent" / "experts" / "svd.safetensors").stat().st_size
    packed_svd = (tmp_path / "packed" / "experts" / "svd.safetensors").stat().st_size
    assert packed_svd < latent_svd / 2
    stored, _ = load_decomposition(tmp_path / "packed" / "experts" / "svd.safetensors", names)
    for n in names:
        assert stored[n].kept == 4 and torch.equal(stored[n].S, dec[n].S)
        assert torch.equal(stored[n].U, dec[n].U[:, :4]) and torch.equal(stored[n].V, dec[n].V[:, :4])

    packed = load_agent(tmp_path / "packed")
    assert packed.packed
    experts_back = packed.extensions["experts"]
    assert experts_back.packed_rank == 4 and experts_back.can_dispatch(packed)
    base = _logits(packed.model)
    experts_back.mode = "a"
    with experts_back.context(packed, ["12+3=?"]) as choices:
        assert choices[0].expert == "a"
        with_a = _logits(packed.model)
    assert float((with_a - base).abs().max()) > 1e-3
    torch.testing.assert_close(_logits(packed.model), base, rtol=0, atol=0)  # hooks gone after the answer
    # the hook on the packed layer adds exactly the rank-4 correction of the latent factors to its output
    layer = packed.model.get_submodule(names[0][: -len(".weight")])
    x = torch.randn(2, 3, layer.in_features, generator=torch.Generator().manual_seed(0))
    plain = layer(x)
    with corrected(packed.model, {names[0]: stored[names[0]]}, experts["a"]):
        hooked = layer(x)
    d = stored[names[0]]
    from agent_forge.models.formats.experts.lowrank import delta

    dense = (d.U * delta(d, experts["a"][names[0]])[:4]) @ d.V.T  # W' - W restricted to the top 4 directions
    expected = plain + layer.rms_norm(x) @ dense.T
    assert float((hooked - expected).abs().max()) <= TOLERANCE
    # evaluation routes the packed agent's tasks too (it answered with base weights before option (b))
    experts_back.mode = "auto"
    assert dispatch_groups(packed, prompts) is not None


def test_an_old_packed_bundle_without_factors_answers_with_its_base_weights(tiny_model, tiny_tokenizer, tmp_path):
    tok = copy.deepcopy(tiny_tokenizer)
    convert_to_bitlinear(tiny_model, sub_norm=True)
    names = target_names(tiny_model)
    dec = decompose_model(tiny_model, names)
    save_agent(Agent(tiny_model, tok, extensions={"experts": ExpertSet(names, dec, {"a": _random_z(dec, 1)})}),
               tmp_path / "packed", packed=True)
    (tmp_path / "packed" / "experts" / "svd.safetensors").unlink()
    packed = load_agent(tmp_path / "packed")
    experts = packed.extensions["experts"]
    assert not experts.can_dispatch(packed) and dispatch_groups(packed, ["1+1"]) is None
    experts.mode = "a"
    with experts.context(packed, ["1+1"]) as choices:
        assert choices[0].expert is None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("int8", [False, True])
def test_the_c_decoder_adds_a_held_experts_correction_as_the_layer_path_does(tiny_model, tiny_tokenizer, tmp_path,
                                                                            variant, int8):
    """With an expert held, the whole-step C decoder computes the corrected model (not the base one, and not
    refusing it): step logits within float tolerance of the layer-by-layer corrected forward, and the correction
    leaves the decoder when the expert is released."""
    convert_to_bitlinear(tiny_model, sub_norm=True)
    names = target_names(tiny_model)
    dec = {n: truncate(d, 4) for n, d in decompose_model(tiny_model, names).items()}
    z = _random_z(dec, 5)
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer)), tmp_path / "packed", packed=True)
    packed = load_agent(tmp_path / "packed").model
    decoder = PackedDecoder(packed, variant=variant)
    assert not decoder.int8_corrections  # a small model: fp32 factors (compute-bound); int8 is for large ones
    decoder.int8_corrections = int8
    ids = IDS[0].tolist()

    def step_logits():
        decoder.reset()
        decoder.feed(ids[:1])
        out = [decoder.logits.clone()]
        for t in ids[1:]:
            decoder.step(t)
            out.append(decoder.logits.clone())
        return torch.stack(out)

    base_c, base_layers = step_logits(), _logits(packed)[0]
    with corrected(packed, dec, z):
        assert PackedDecoder.unsupported(packed) is None and decoder_for(packed) is not None
        held_c, held_layers = step_logits(), _logits(packed)[0]
    effect = float((held_layers - base_layers).abs().max())
    drift = float((base_c - base_layers).abs().max())  # C step vs layer path on the base model: float order
    assert effect > 1e-2  # the expert changes the model
    # held: the same function in both paths, so they differ by what they differ by without the expert (float
    # summation order flipping an int8 activation code here and there), far less than the expert's effect
    gap = float((held_c - held_layers).abs().max())
    # (int8 factors add their own rounding: within a percent of the correction)
    assert gap <= 2 * drift + (1e-2 * effect if int8 else 1e-4) and gap <= 0.05 * effect, (gap, drift, effect)
    assert float((step_logits() - base_c).abs().max()) == 0.0  # released: the base model's exact numbers again


def test_int8_correction_factors_reproduce_the_fp32_correction_closely():
    """The C step's int8 factors (per-column / per-row absmax, padded to 8 directions with zeros): the correction
    they compute is within a few tenths of a percent of the fp32 one, and the padding adds nothing."""
    from agent_forge.models.formats.ternary.decode import int8_factors

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(96, 13, generator=g), torch.randn(13, 40, generator=g)
    a8, b8, scale = int8_factors(a, b)
    assert a8.dtype == torch.int8 and a8.shape == (96, 16) and b8.shape == (16, 40) and scale.shape == (16,)
    assert not a8[:, 13:].any() and not b8[13:].any()
    x = torch.randn(5, 96, generator=g)
    exact = (x @ a) @ b
    approx = ((x @ a8.float()) * scale) @ b8.float()
    assert float((approx - exact).norm() / exact.norm()) < 1e-2
