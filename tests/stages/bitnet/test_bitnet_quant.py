"""BitNet b1.58 quantizers against values computed by hand, and the straight-through estimator."""

import torch

from agent_forge.models.formats.ternary.quant import (
    absmean_scale,
    activation_codes,
    quantize_activation,
    quantize_weight,
    straight_through,
    ternary_codes,
)


def test_absmean_ternary_weights_by_hand():
    w = torch.tensor([[0.9, -0.05, 0.3], [-0.6, 0.0, 0.25]])
    # gamma = (0.9 + 0.05 + 0.3 + 0.6 + 0 + 0.25) / 6 = 2.1 / 6 = 0.35
    assert torch.isclose(absmean_scale(w), torch.tensor(0.35))
    # w / gamma = [2.571, -0.143, 0.857], [-1.714, 0, 0.714] -> round, clip to [-1, 1]
    codes, gamma = ternary_codes(w)
    assert codes.dtype == torch.int8
    assert codes.tolist() == [[1, 0, 1], [-1, 0, 1]]
    expected = torch.tensor([[0.35, 0.0, 0.35], [-0.35, 0.0, 0.35]])
    assert torch.allclose(quantize_weight(w), expected)


def test_gamma_does_not_depend_on_the_thread_count():
    # an fp32 mean over a SmolLM2-sized matrix changes by an ulp with the thread count in about a third of these
    # matrices; the float64 sum rounds to one fp32 value, so the export (any threads) and a later forward agree
    threads = torch.get_num_threads()
    try:
        for seed in range(12):
            w = torch.randn(576, 1536, generator=torch.Generator().manual_seed(seed)) * 0.02
            gammas = set()
            for n in (1, 2, 4):
                torch.set_num_threads(n)
                gammas.add(absmean_scale(w).item())
            exact = w.double().abs().sum().item() / w.numel()
            assert len(gammas) == 1
            assert abs(gammas.pop() - exact) <= exact * 2**-23  # within one fp32 rounding of the exact mean
    finally:
        torch.set_num_threads(threads)


def test_all_zero_weight_does_not_divide_by_zero():
    codes, gamma = ternary_codes(torch.zeros(2, 3))
    assert gamma.item() == 1e-5 or abs(gamma.item() - 1e-5) < 1e-12
    assert codes.abs().sum() == 0


def test_per_token_absmax_int8_by_hand():
    x = torch.tensor([[1.0, -0.5, 0.25], [0.0, 2.0, -4.0]])
    codes, scale = activation_codes(x)
    # token 0: s = 127 / 1 -> [127, -63.5 -> -64 (half to even), 31.75 -> 32]
    # token 1: s = 127 / 4 -> [0, 63.5 -> 64, -127]
    assert codes.tolist() == [[127.0, -64.0, 32.0], [0.0, 64.0, -127.0]]
    assert torch.allclose(scale.squeeze(-1), torch.tensor([127.0, 31.75]))
    deq = quantize_activation(x)
    assert torch.allclose(deq, codes / scale)
    # quantization error is at most half a step per token
    assert ((deq - x).abs() <= 0.5 / scale + 1e-7).all()


def test_activation_scale_is_per_token_not_per_tensor():
    x = torch.tensor([[100.0, 1.0], [0.01, 0.02]])
    deq = quantize_activation(x)
    # a per-tensor scale would flush the second token to zero; per token it survives almost exactly
    assert torch.allclose(deq[1], x[1], rtol=1e-2)


def test_fewer_activation_bits_use_a_smaller_grid():
    x = torch.tensor([[1.0, 0.3, -0.6]])
    codes, _ = activation_codes(x, bits=4)
    # Q = 7: [7, 2.1 -> 2, -4.2 -> -4]
    assert codes.tolist() == [[7.0, 2.0, -4.0]]


def test_straight_through_estimator_passes_gradients_unchanged():
    x = torch.tensor([0.3, -1.2, 0.7], requires_grad=True)
    y = straight_through(x, torch.round(x.detach()))
    assert torch.equal(y.detach(), torch.tensor([0.0, -1.0, 1.0]))
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    # d(round)/dx is zero almost everywhere; the STE replaces it by the identity
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_strength_blends_full_precision_and_quantized():
    x = torch.tensor([0.3, -1.2])
    q = torch.tensor([0.0, -1.0])
    assert torch.equal(straight_through(x, q, 0.0), x)
    assert torch.allclose(straight_through(x, q, 0.5), torch.tensor([0.15, -1.1]))
    assert torch.allclose(straight_through(x, q, 1.0), q)
