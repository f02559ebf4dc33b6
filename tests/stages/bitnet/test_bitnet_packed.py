"""The 2-bit packed export: exact unpacking, size on disk, CPU inference from it, and transformers loading it."""

import json

import pytest
import torch

from agent_forge.errors import ForgeError
from agent_forge.models.formats.ternary import (
    PackedBitLinear,
    bitlinear_layers,
    convert_to_bitlinear,
    export_packed,
    load_packed,
    packed_size_report,
    set_quant_strength,
)
from agent_forge.models.formats.ternary.packed import unpack_export_codes


def _ternary(make_llama, **kwargs):
    model = make_llama(hidden=kwargs.pop("hidden", 32), tie=kwargs.pop("tie", False))
    convert_to_bitlinear(model, **kwargs)
    return model


def test_unpacking_the_export_is_exact(tmp_path, make_llama):
    model = _ternary(make_llama)
    export_packed(model, None, tmp_path / "packed")
    unpacked = unpack_export_codes(tmp_path / "packed")
    for name, layer in bitlinear_layers(model).items():
        codes, gamma = layer.ternary()
        assert torch.equal(unpacked[name][0], codes)
        assert unpacked[name][1] == pytest.approx(float(gamma), rel=1e-6)


def test_packed_weights_take_two_bits_each_on_disk(tmp_path, make_llama):
    model = _ternary(make_llama, hidden=64)
    export_packed(model, None, tmp_path / "packed")
    report = packed_size_report(tmp_path / "packed")
    n_weights = sum(layer.weight.numel() for layer in bitlinear_layers(model).values())
    assert report["ternary_weights"] == n_weights
    assert report["packed_weight_bytes"] == n_weights // 4
    assert 2.0 < report["bits_per_weight"] <= 2.05


@pytest.mark.parametrize("tie,sub_norm", [(False, False), (True, False), (False, True)])
def test_packed_inference_reproduces_the_ternary_model(tmp_path, make_llama, token_ids, tie, sub_norm):
    model = _ternary(make_llama, tie=tie, sub_norm=sub_norm)
    export_packed(model, None, tmp_path / "packed")
    packed, _ = load_packed(tmp_path / "packed")
    assert sum(isinstance(m, PackedBitLinear) for m in packed.modules()) == 14
    with torch.no_grad():
        expected = model(token_ids).logits
        got = packed(token_ids).logits
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
    if tie:
        assert packed.lm_head.weight is packed.model.embed_tokens.weight


def test_packed_model_holds_no_float_copy_of_packed_layers(tmp_path, make_llama):
    model = _ternary(make_llama, hidden=128)  # inputs a multiple of the kernel's 128-wide blocks: no padding
    export_packed(model, None, tmp_path / "packed")
    packed, _ = load_packed(tmp_path / "packed")
    for module in packed.modules():
        if isinstance(module, PackedBitLinear):
            floats = [t for t in module.state_dict(keep_vars=True).values() if t.is_floating_point()]
            assert module.packed.dtype == torch.uint8 and not floats
    fp_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    packed_bytes = sum(t.numel() * t.element_size() for t in list(packed.parameters()) + list(packed.buffers()))
    linear_bytes = sum(layer.weight.numel() * 4 for layer in bitlinear_layers(model).values())
    # every packed layer shrinks 16x; embeddings, norms and rotary tables stay fp32
    assert linear_bytes > 0.9 * fp_bytes
    assert packed_bytes <= fp_bytes - linear_bytes + linear_bytes / 16 + 1024


def test_export_refuses_a_model_that_is_not_fully_ternary(tmp_path, make_llama):
    model = _ternary(make_llama)
    set_quant_strength(model, 0.5)
    with pytest.raises(ForgeError, match="ternary"):
        export_packed(model, None, tmp_path / "packed")


def test_loading_a_broken_export_is_a_forge_error(tmp_path, make_llama):
    with pytest.raises(ForgeError, match="not a packed"):
        load_packed(tmp_path)
    model = _ternary(make_llama)
    folder = export_packed(model, None, tmp_path / "packed")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ForgeError):
        load_packed(folder)


def test_transformers_loads_the_export_with_its_bitnet_integration(tmp_path, make_llama, token_ids):
    from transformers import AutoModelForCausalLM
    from transformers.integrations.bitnet import BitLinear as HFBitLinear

    model = _ternary(make_llama)
    folder = export_packed(model, None, tmp_path / "packed")
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "bitnet"
    assert config["quantization_config"]["modules_to_not_convert"] == ["lm_head"]
    # transformers wraps its bitnet kernels in torch.compile; compiling on CPU takes ~30 s, so this test runs
    # them eagerly (same arithmetic); the compiled path is covered by the slow test below
    with torch._dynamo.config.patch(disable=True):
        hf = AutoModelForCausalLM.from_pretrained(folder).eval()
        assert isinstance(hf.model.layers[0].self_attn.q_proj, HFBitLinear)
        with torch.no_grad():
            got = hf(token_ids).logits
    with torch.no_grad():
        expected = model(token_ids).logits
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_transformers_bitnet_compiled_path_on_cpu(tmp_path, make_llama, token_ids):
    from transformers import AutoModelForCausalLM

    model = _ternary(make_llama)
    folder = export_packed(model, None, tmp_path / "packed")
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.allclose(hf(token_ids).logits, model(token_ids).logits, atol=1e-4, rtol=1e-4)
