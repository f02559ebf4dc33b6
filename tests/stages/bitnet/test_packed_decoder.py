"""The whole-step C decoder (PackedDecoder) against the layer-by-layer packed model it is built from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from agent_forge.models.formats.ternary import convert_to_bitlinear, export_packed, load_packed
from agent_forge.models.formats.ternary.decode import PackedDecoder, quantize_head
from agent_forge.models.formats.ternary.kernel import VARIANTS


def _packed(tmp_path, make_llama, *, tie=False, sub_norm=False, hidden=32, seed=0):
    model = make_llama(seed=seed, hidden=hidden, tie=tie)
    convert_to_bitlinear(model, sub_norm=sub_norm)
    export_packed(model, None, tmp_path / "packed")
    packed, _ = load_packed(tmp_path / "packed")
    return packed


def _step_logits(decoder, ids):
    decoder.reset()
    out = []
    for t in ids:
        decoder.step(t)
        out.append(decoder.logits.clone())
    return torch.stack(out)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("tie,sub_norm", [(False, False), (True, False), (False, True)])
def test_decoder_logits_match_the_packed_model(tmp_path, make_llama, variant, tie, sub_norm):
    packed = _packed(tmp_path, make_llama, tie=tie, sub_norm=sub_norm)
    ids = torch.randint(0, 48, (12,), generator=torch.Generator().manual_seed(3)).tolist()
    with torch.no_grad():
        expected = packed(torch.tensor([ids])).logits[0]
    got = _step_logits(PackedDecoder(packed, variant=variant, int8_head=False), ids)
    # float summation order differs from torch's (norms, attention), so an int8 code can round the other way
    assert torch.allclose(got, expected, atol=2e-3, rtol=1e-3), (got - expected).abs().max()


def test_int8_head_keeps_the_greedy_token_and_bounds_every_logit(tmp_path, make_llama):
    packed = _packed(tmp_path, make_llama, hidden=64)
    ids = torch.randint(0, 48, (16,), generator=torch.Generator().manual_seed(4)).tolist()
    exact, approx = PackedDecoder(packed, int8_head=False), PackedDecoder(packed, int8_head=True)
    exact.reset()
    approx.reset()
    for t in ids:
        a, b = exact.step(t), approx.step(t)
        assert a == b == int(exact.logits.argmax())
        assert 1 <= approx.rescored <= 48
        assert torch.allclose(approx.logits, exact.logits, atol=0.05 * float(exact.logits.abs().max()) + 1e-3)


def test_quantize_head_error_is_within_half_a_step():
    w = torch.randn(37, 70)
    q, scale, l1 = quantize_head(w)
    assert q.shape == (37, 96) and q.dtype == torch.int8 and torch.all(q[:, 70:] == 0)
    assert torch.all((q[:, :70].float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-6)
    assert torch.allclose(l1, (q[:, :70].float() * scale[:, None]).abs().sum(1))


def test_greedy_matches_the_layer_by_layer_path_and_threads_agree(tmp_path, make_llama):
    packed = _packed(tmp_path, make_llama, hidden=64, seed=1)
    prompt = [5, 17, 3, 40, 22]
    with torch.no_grad():
        out = packed.generate(torch.tensor([prompt]), max_new_tokens=20, min_new_tokens=20, do_sample=False,
                              pad_token_id=0)
    reference = out[0, len(prompt):].tolist()
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            decoder = PackedDecoder(packed, capacity=4)  # grows (and copies its cache) while decoding
            results.append((decoder.greedy(prompt, 20), _step_logits(decoder, prompt + reference[:5])))
    finally:
        torch.set_num_threads(threads)
    assert results[0][0] == reference
    assert results[1][0] == reference
    assert torch.equal(results[0][1], results[1][1])


def test_greedy_stops_at_a_stop_token_and_checks_its_input(tmp_path, make_llama):
    packed = _packed(tmp_path, make_llama)
    decoder = PackedDecoder(packed)
    first = decoder.greedy([1, 2, 3], 1)[0]
    assert decoder.greedy([1, 2, 3], 10, stop_ids=[first]) == [first]
    with pytest.raises(ValueError, match="vocabulary"):
        decoder.step(48)
    with pytest.raises(ValueError, match="prompt"):
        decoder.greedy([], 3)


def test_models_it_cannot_run_are_named(tmp_path, make_llama):
    model = make_llama()
    assert "PackedBitLinear" in PackedDecoder.unsupported(model)
    with pytest.raises(ValueError, match="cannot run"):
        PackedDecoder(model)


def test_without_a_compiler_the_packed_model_falls_back_and_the_decoder_says_why(tmp_path, make_llama):
    # a fresh process with an empty kernel cache and no usable compiler: the torch path runs as before
    model = make_llama()
    convert_to_bitlinear(model)
    export_packed(model, None, tmp_path / "packed")
    code = (
        "import sys, torch\n"
        "from agent_forge.models.formats.ternary import kernel_description, load_packed\n"
        "from agent_forge.models.formats.ternary.decode import PackedDecoder\n"
        f"m, _ = load_packed({str(tmp_path / 'packed')!r})\n"
        "print(kernel_description())\n"
        "print(PackedDecoder.unsupported(m))\n"
        "print(m(torch.tensor([[1, 2, 3]])).logits.shape)\n"
    )
    env = dict(os.environ, CC=str(tmp_path / "no-such-compiler"), AGENT_FORGE_KERNEL_DIR=str(tmp_path / "kernels"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("torch fallback (") and "no-such-compiler" in lines[0]
    assert lines[1] == "the C kernel is unavailable (torch fallback in use)"
    assert lines[2] == "torch.Size([1, 3, 48])"
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 48)


def test_biases_and_grouped_query_heads(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(5)
    config = LlamaConfig(vocab_size=64, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=32,
                         attention_bias=True, mlp_bias=True)
    model = LlamaForCausalLM(config).eval()
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.normal_(p, std=0.5)
    convert_to_bitlinear(model)
    export_packed(model, None, tmp_path / "packed")
    packed, _ = load_packed(tmp_path / "packed")
    ids = [3, 9, 27, 81 % 64, 50, 1, 7]
    with torch.no_grad():
        expected = packed(torch.tensor([ids])).logits[0]
    for variant in sorted(VARIANTS):
        got = _step_logits(PackedDecoder(packed, variant=variant, int8_head=False), ids)
        assert torch.allclose(got, expected, atol=2e-3, rtol=1e-3), (variant, (got - expected).abs().max())


def test_a_hooked_layer_is_refused_rather_than_skipped(tmp_path, make_llama):
    # expert corrections (experts.lowrank.corrected) hook PackedBitLinear layers; the C step cannot see hooks
    packed = _packed(tmp_path, make_llama)
    decoder = PackedDecoder(packed)
    handle = packed.model.layers[0].mlp.up_proj.register_forward_hook(lambda m, i, o: o * 2)
    try:
        assert "forward hook" in PackedDecoder.unsupported(packed)
        with pytest.raises(ValueError, match="forward hook"):
            decoder.greedy([1, 2, 3], 4)
    finally:
        handle.remove()
    assert PackedDecoder.unsupported(packed) is None
    assert len(decoder.greedy([1, 2, 3], 4)) == 4
