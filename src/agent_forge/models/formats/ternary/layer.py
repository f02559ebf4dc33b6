"""BitLinear: the BitNet b1.58 linear layer used for quantization-aware training.

It keeps the latent full-precision weight as its trainable ``weight`` parameter (so optimisers, merging code
and ``save_pretrained`` see an ordinary ``weight``/``bias`` pair) and quantizes on the fly in ``forward``:
optional sub-layer RMSNorm -> per-token absmax int8 activations -> absmean ternary weights -> matmul, with the
straight-through estimator so that gradients reach the latent weights.

``strength`` is the warm-up lambda: 0 behaves exactly like the original ``nn.Linear``, 1 is the full BitNet
b1.58 forward. Values in between blend quantized and full-precision weights and activations (and, when the
sub-layer norm is enabled, normalized and raw inputs) so that a pretrained model can be eased into ternary.

Without gradients (evaluation, generation) a fully quantized fp32 layer computes what the packed kernels compute,
bit for bit: integer activation codes times ternary codes (exact integers in fp32), rescaled once per token by
gamma / s, then the bias. So an agent scores the same latent and packed (`save_agent(..., packed=True)`); the
dequantized product the straight-through forward uses differs from it by float rounding. Forwards with gradients
keep the straight-through form.

Quantizing the weight costs about ten passes over it, more than the matmul itself when a decode step feeds a
few tokens. `frozen_ternary_weights(model)` computes each layer's ternary codes (or, during warm-up, its forward
weight) once for a block that does not change the weights (a generation) and the no-grad forwards inside it reuse
them: the same values, so the same outputs bit for bit, at the price of one more copy of the linear weights while
the block runs.

Exercise: ``pytest tests/stages/bitnet/test_bitnet_layer.py``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from .quant import activation_codes, quantize_activation, quantize_weight, straight_through, ternary_codes


class BitLinear(nn.Module):
    """Drop-in replacement for ``nn.Linear`` with BitNet b1.58 quantization (latent fp weights kept)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        sub_norm: bool = False,
        norm_eps: float = 1e-6,
        act_bits: int = 8,
        strength: float = 1.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.act_bits = act_bits
        self.strength = float(strength)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        # BitNet normalizes a linear layer's input before quantizing it so the quantized values keep their
        # variance; named `rms_norm` because that is the key transformers' bitnet integration loads.
        self.rms_norm = nn.RMSNorm(in_features, eps=norm_eps, device=device, dtype=dtype) if sub_norm else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        # what `frozen_ternary_weights` holds for no-grad forwards (None outside it; not buffers: never saved):
        # the ternary codes as fp32 and gamma for the integer path, or the blended forward weight during warm-up
        self.frozen_codes: tuple[torch.Tensor, torch.Tensor] | None = None
        self.frozen_weight: torch.Tensor | None = None

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, *, sub_norm: bool = False, norm_eps: float = 1e-6, act_bits: int = 8,
        strength: float = 1.0,
    ) -> "BitLinear":
        """Wrap an existing linear layer, sharing its weight and bias parameters (ties are preserved)."""
        layer = cls(
            linear.in_features, linear.out_features, bias=False, sub_norm=sub_norm, norm_eps=norm_eps,
            act_bits=act_bits, strength=strength, device=linear.weight.device, dtype=linear.weight.dtype,
        )
        layer.weight = linear.weight
        layer.bias = linear.bias
        return layer

    def normalized_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input after the (strength-blended) sub-layer norm; identity when the norm is disabled."""
        if self.rms_norm is None or self.strength == 0.0:
            return x
        normed = self.rms_norm(x)
        if self.strength == 1.0:
            return normed
        return x + self.strength * (normed - x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_integer_path(x):
            return self.integer_forward(x)
        x = self.normalized_input(x)
        x = straight_through(x, quantize_activation(x, self.act_bits), self.strength)
        frozen = self.frozen_weight is not None and not torch.is_grad_enabled()
        return F.linear(x, self.frozen_weight if frozen else self.forward_weight(), self.bias)

    def forward_weight(self) -> torch.Tensor:
        """The weight `forward` multiplies by: the quantized weight blended at `strength`, gradients to the latent."""
        return straight_through(self.weight, quantize_weight(self.weight), self.strength)

    def ternary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(int8 codes in {-1, 0, 1}, gamma): what is packed and shipped for this layer."""
        return ternary_codes(self.weight)

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass multiplies by at the current strength (no gradient)."""
        return self.forward_weight().detach()

    def has_integer_path(self) -> bool:
        """Fully quantized fp32 weights: no-grad forwards can compute `integer_forward` (the packed kernels'
        precision; a bf16 matmul would round the integer sums)."""
        return self.strength == 1.0 and self.weight.dtype == torch.float32

    def uses_integer_path(self, x: torch.Tensor) -> bool:
        """Whether `forward(x)` computes `integer_forward`: no gradients, an fp32 input, `has_integer_path`."""
        return not torch.is_grad_enabled() and x.dtype == torch.float32 and self.has_integer_path()

    def integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The packed kernels' arithmetic: integer activations x ternary codes, rescaled once per token.

        The dot products are exact integers in fp32 (below 2^24), then y = dot * (gamma / s) + bias, the same two
        fp32 operations the C kernel does, so the two agree bit for bit. Equal to the straight-through forward
        at strength 1 up to float rounding. No gradient.
        """
        x = self.normalized_input(x)
        x_codes, x_scale = activation_codes(x, self.act_bits)
        if self.frozen_codes is not None:
            w_codes, gamma = self.frozen_codes
        else:
            codes, gamma = self.ternary()
            w_codes = codes.float()
        y = F.linear(x_codes, w_codes) * (gamma / x_scale)
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"sub_norm={self.rms_norm is not None}, act_bits={self.act_bits}, strength={self.strength:g}"
        )


@contextmanager
def frozen_ternary_weights(model: nn.Module) -> Iterator[None]:
    """Quantize every BitLinear's weight once for the block; its no-grad forwards reuse it (bit-identical).

    Only for blocks that leave the weights alone (a generation): a weight changed inside would not be seen.
    Forwards with gradients enabled still quantize afresh, so training inside the block stays correct. Layers
    already frozen by an enclosing block are left to it.
    """
    layers = [m for m in model.modules()
              if isinstance(m, BitLinear) and m.frozen_weight is None and m.frozen_codes is None]
    try:
        with torch.no_grad():
            for layer in layers:
                if layer.has_integer_path():
                    codes, gamma = layer.ternary()
                    layer.frozen_codes = (codes.float(), gamma)
                else:
                    layer.frozen_weight = layer.forward_weight()
        yield
    finally:
        for layer in layers:
            layer.frozen_codes = None
            layer.frozen_weight = None
