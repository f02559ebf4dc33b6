"""The BitNet b1.58 quantizers: absmean ternary weights, per-token absmax int8 activations, and the STE.

Formulas (Ma et al. 2024, "The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits"):

* weights: ``gamma = mean(|W|)``, ``W_q = RoundClip(W / gamma, -1, 1)``, dequantized ``W_q * gamma``
  (one scale per weight matrix);
* activations: per token, ``s = 127 / max(|x|)``, ``x_q = RoundClip(x * s, -128, 127)``, dequantized ``x_q / s``;
* training: the straight-through estimator ``x + (q(x) - x).detach()`` — the forward pass sees the quantized
  value, the backward pass treats quantization as identity. ``strength`` (the warm-up lambda) blends the two:
  0 is full precision, 1 is fully quantized.

Exercise: ``pytest tests/stages/bitnet/test_bitnet_quant.py``.
"""

from __future__ import annotations

import torch

# A matrix or token whose values are all zero would divide by zero; the reference code clamps at 1e-5.
SCALE_EPS = 1e-5


def absmean_scale(weight: torch.Tensor) -> torch.Tensor:
    """gamma = mean |W| over the whole matrix (a 0-dim fp32 tensor), clamped away from zero.

    The sum runs in float64 and is rounded to fp32 once: an fp32 sum's order follows torch's thread count, and a
    gamma one ulp apart at export and at evaluation is enough to flip ternary codes and activation codes
    downstream; in float64 the rounding error is far below one fp32 ulp, so every thread count gives one gamma.
    """
    total = weight.detach().float().abs().sum(dtype=torch.float64)
    return (total / weight.numel()).float().clamp(min=SCALE_EPS)


def ternary_codes(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (codes in {-1, 0, 1} as int8, gamma) with ``weight ~= codes * gamma``."""
    gamma = absmean_scale(weight)
    codes = (weight.detach().float() / gamma).round().clamp(-1, 1).to(torch.int8)
    return codes, gamma


def quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """The dequantized ternary weight ``RoundClip(W / gamma, -1, 1) * gamma`` in the weight's dtype (no gradient)."""
    codes, gamma = ternary_codes(weight)
    return (codes.float() * gamma).to(weight.dtype)


def activation_codes(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (last dim) absmax quantization: (integer codes as fp32, scale s) with ``x ~= codes / s``."""
    q_max = 2 ** (bits - 1) - 1
    xf = x.detach().float()
    absmax = xf.abs().amax(dim=-1, keepdim=True).clamp(min=SCALE_EPS)
    # a true division, as the packed kernels compute it: torch turns `number / tensor` into a reciprocal and a
    # multiply, which is one ulp off now and then, and a scale one ulp off can flip an activation's int8 code
    scale = absmax.new_tensor(float(q_max)) / absmax
    codes = (xf * scale).round().clamp(-q_max - 1, q_max)
    return codes, scale


def quantize_activation(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """The dequantized per-token absmax activation ``RoundClip(x * s, -Q, Q - 1) / s`` (no gradient)."""
    codes, scale = activation_codes(x, bits)
    return (codes / scale).to(x.dtype)


def straight_through(x: torch.Tensor, quantized: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Forward value ``x + strength * (quantized - x)``; gradient w.r.t. ``x`` is the identity (STE)."""
    if strength == 0.0:
        return x
    return x + strength * (quantized - x).detach()
