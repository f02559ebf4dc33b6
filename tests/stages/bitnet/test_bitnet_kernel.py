"""The packed ternary matmul (C kernel and torch fallback) against BitLinear's integer reference."""

import pytest
import torch
from torch import nn

from agent_forge.models.formats.ternary import kernel
from agent_forge.models.formats.ternary.layer import BitLinear
from agent_forge.models.formats.ternary.packing import pack_kernel, pack_rows, rows_to_kernel, unpack_kernel


def _case(k, n, m, bias=True, seed=0):
    torch.manual_seed(seed)
    layer = BitLinear.from_linear(nn.Linear(k, n, bias=bias))
    if bias:
        nn.init.normal_(layer.bias)
    codes, gamma = layer.ternary()
    return layer, pack_kernel(codes), float(gamma), torch.randn(m, k) * 3


def test_the_c_kernel_compiles_here():
    # gcc is available on every machine this project supports; the fallback exists for others
    assert kernel.kernel_available(), kernel.kernel_description()
    assert "C kernel" in kernel.kernel_description()


@pytest.mark.parametrize("k,n,m", [(32, 48, 1), (128, 384, 3), (130, 20, 5), (576, 192, 2), (64, 7, 9)])
def test_kernel_matches_the_integer_reference(k, n, m):
    layer, packed, gamma, x = _case(k, n, m)
    y = kernel.ternary_linear(x, packed, gamma, k, layer.bias.detach())
    ref = layer.integer_forward(x).detach()
    # same integers, same per-token factor: at most float rounding of the bias add apart
    assert torch.allclose(y, ref, rtol=1e-6, atol=1e-6)
    assert torch.allclose(y, layer(x).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", sorted(kernel.VARIANTS))
@pytest.mark.parametrize("k,n,m", [(32, 48, 1), (130, 20, 5), (576, 192, 1), (576, 1536, 1), (1536, 76, 4), (300, 33, 7)])
def test_every_variant_matches_the_integer_reference_at_one_and_two_threads(variant, k, n, m):
    # shapes off the 128-input block and the 32-row LUT tile, single tokens (row-parallel) and batches
    layer, packed, gamma, x = _case(k, n, m, seed=k + n + m)
    ref = layer.integer_forward(x).detach()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = kernel.TernaryMatmul(packed, gamma, k, layer.bias.detach(), variant=variant)(x)
        torch.set_num_threads(2)
        multi = kernel.TernaryMatmul(packed, gamma, k, layer.bias.detach(), variant=variant)(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(single, ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(single, multi)


def test_variants_agree_bit_for_bit_and_unknown_ones_are_refused():
    layer, packed, gamma, x = _case(448, 100, 3, bias=False)
    outs = [kernel.ternary_linear(x, packed, gamma, 448, variant=v) for v in sorted(kernel.VARIANTS)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    with pytest.raises(ValueError, match="variant"):
        kernel.TernaryMatmul(packed, gamma, 448, variant="avx512")


def test_torch_fallback_computes_the_same_values():
    layer, packed, gamma, x = _case(200, 24, 4)
    fallback = kernel._torch_linear(x, packed, gamma, 200, layer.bias.detach(), 8)
    assert torch.allclose(fallback, kernel.ternary_linear(x, packed, gamma, 200, layer.bias.detach()), atol=1e-5)


def test_batched_inputs_keep_their_leading_shape_and_threads_agree():
    layer, packed, gamma, _ = _case(256, 512, 1, bias=False)
    x = torch.randn(2, 40, 256)  # 80 tokens x 512 x 256 is large enough for the parallel path
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = kernel.ternary_linear(x, packed, gamma, 256)
        torch.set_num_threads(2)
        multi = kernel.ternary_linear(x, packed, gamma, 256)
    finally:
        torch.set_num_threads(threads)
    assert single.shape == (2, 40, 512)
    assert torch.equal(single, multi)
    assert torch.allclose(single, layer.integer_forward(x).detach(), atol=1e-5)


def test_zero_and_extreme_tokens():
    layer, packed, gamma, _ = _case(128, 16, 1, bias=False)
    x = torch.zeros(3, 128)
    x[1, 5] = 1e4   # one huge activation takes the whole int8 range
    x[2] = -1e-6    # below the absmax clamp
    y = kernel.ternary_linear(x, packed, gamma, 128)
    assert torch.equal(y[0], torch.zeros(16))
    assert torch.allclose(y, layer.integer_forward(x).detach(), rtol=1e-6, atol=1e-9)


def test_wrong_input_width_is_rejected():
    _, packed, gamma, x = _case(64, 8, 2)
    with pytest.raises(ValueError, match="features"):
        kernel.ternary_linear(x[:, :32], packed, gamma, 64)


@pytest.mark.parametrize("n,k", [(4, 1), (8, 130), (192, 576), (12, 256)])
def test_c_repacking_matches_the_torch_repacking(n, k):
    codes = torch.randint(-1, 2, (n, k), dtype=torch.int8, generator=torch.Generator().manual_seed(n + k))
    rows = pack_rows(codes)
    assert torch.equal(kernel.repack_for_kernel(rows), rows_to_kernel(rows))
    assert torch.equal(unpack_kernel(kernel.repack_for_kernel(rows), k), codes)


def test_an_empty_batch_gives_an_empty_output():
    _, packed, gamma, _ = _case(64, 8, 1)
    assert kernel.ternary_linear(torch.zeros(0, 64), packed, gamma, 64).shape == (0, 8)
