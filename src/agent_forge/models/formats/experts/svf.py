"""Singular Value Fine-tuning (SVF, Transformer², Sun et al. 2025): the maths of an expert vector.

For every chosen matrix (the MLP matrices, as in the reference code SakanaAI/self-adaptive-llms) the weight is
decomposed once, W = U diag(S) V^T (thin SVD, float64 then stored in float32). An expert is one vector z per
matrix, z = max_mult * sigmoid(p) for a trainable p, and scales the singular values:

    W' = U diag(S * z) V^T * (sum(S) / sum(S * z))          (the reference's rescale keeps sum(S))

It is applied as a correction of the stored weight, W' = W + U diag(S * (z * c - 1)) V^T with c the rescale:
with a full-rank thin SVD this is the same matrix, but the SVD's own reconstruction error (about 1e-6
relative in float32) stays out of W', and a constant z (every initial expert) adds a correction of zero up
to rounding of `z * c - 1` (|z * c - 1| <= a few float32 ulps), so W' = W to float tolerance.

Composition is the paper's linear interpolation of expert vectors, z = sum_k a_k z_k (then the rescale); a
one-hot a gives exactly z_k. On a ternary model (BitLinear) the correction acts on the latent weight and the
layer's own forward re-quantizes W' to ternary (the straight-through estimator carries gradients in training).

Exercise: `pytest tests/models/test_experts_format.py`.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from ....errors import ForgeError

# the reference trains the MLP matrices only ("mlp" in the parameter name)
DEFAULT_PATTERN = r"\.mlp\.[^.]+\.weight$"


def target_names(model: torch.nn.Module, pattern: str = DEFAULT_PATTERN) -> list[str]:
    """The 2-D weight parameters an expert scales, in the model's parameter order."""
    regex = re.compile(pattern)
    names = [n for n, p in model.named_parameters() if regex.search(n) and p.dim() == 2]
    if not names:
        raise ForgeError(f"no weight matrix of the model matches the expert pattern {pattern!r}")
    return names


@dataclass
class Decomposition:
    """U [out, k], S [r], V [in, k] of one matrix (W = U diag(S) V^T), float32 on the model's device.

    k = r for the full thin SVD; a truncated decomposition (`lowrank.truncate`, what a packed save keeps)
    has k < r columns of U and V but the whole S, which the rescale of `scaled_singular_values` needs.
    """

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor

    @property
    def rank(self) -> int:
        """Singular values: the length of an expert's z for this matrix."""
        return int(self.S.numel())

    @property
    def kept(self) -> int:
        """Singular directions stored (columns of U and V)."""
        return int(self.U.shape[1])


def decompose(weight: torch.Tensor) -> Decomposition:
    """Thin SVD of one matrix, computed in float64 for accuracy and kept in float32."""
    w = weight.detach().to(device="cpu", dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(w, full_matrices=False)
    return Decomposition(U.float().contiguous(), S.float().contiguous(), Vh.T.float().contiguous())


def decompose_model(model: torch.nn.Module, names: Sequence[str]) -> dict[str, Decomposition]:
    params = dict(model.named_parameters())
    return {n: decompose(params[n]) for n in names}


def z_of(logits: torch.Tensor, max_mult: float = 1.0) -> torch.Tensor:
    """The scale vector of trainable logits (the reference's `sigmoid(p) * max_mult`)."""
    return torch.sigmoid(logits) * max_mult


def logit_init(value: float, max_mult: float = 1.0) -> float:
    """The logit whose z is `value` (any constant z reproduces W after the rescale)."""
    q = min(max(value / max_mult, 1e-6), 1 - 1e-6)
    return float(torch.logit(torch.tensor(q, dtype=torch.float64)))


def scaled_singular_values(d: Decomposition, z: torch.Tensor) -> torch.Tensor:
    """S * z * sum(S) / sum(S * z): the composed matrix's singular values."""
    s = d.S.to(z.device)
    sz = s * z
    return sz * (s.sum() / sz.sum().clamp_min(1e-12))


def correction(d: Decomposition, z: torch.Tensor) -> torch.Tensor:
    """W' - W = U diag(S * (z * c - 1)) V^T, differentiable in z (over the kept directions only when `d` is
    truncated: then the rank-k part of the correction)."""
    s = d.S.to(z.device)
    delta = (scaled_singular_values(d, z) - s)[: d.kept]
    return (d.U.to(z.device) * delta) @ d.V.to(z.device).T


def compose(d: Decomposition, z: torch.Tensor) -> torch.Tensor:
    """The reference's composed matrix U diag(S z) V^T * sum(S)/sum(S z), from the factors alone."""
    return (d.U.to(z.device) * scaled_singular_values(d, z)) @ d.V.to(z.device).T


def mix(experts: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """z = sum_k a_k z_k, matrix by matrix (the paper's composition)."""
    if len(experts) != len(weights) or not experts:
        raise ForgeError(f"a mixture needs one weight per expert ({len(experts)} experts, {len(weights)} weights)")
    names = list(experts[0])
    return {n: sum(float(a) * e[n] for a, e in zip(weights, experts)) for n in names}


def expert_weights(model: torch.nn.Module, decomposition: Mapping[str, Decomposition],
                   z: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{parameter name: W + correction} with gradients to z (for `torch.func.functional_call`)."""
    params = dict(model.named_parameters())
    out = {}
    for name, d in decomposition.items():
        base = params[name].detach()
        out[name] = base + correction(d, z[name].to(base.device)).to(base.dtype)
    return out


@contextmanager
def applied(model: torch.nn.Module, decomposition: Mapping[str, Decomposition],
            z: Mapping[str, torch.Tensor] | None) -> Iterator[None]:
    """Hold W' in the model's weights; on exit copy the saved originals back (bit-identical restore).

    `z=None` is the base model (nothing changes).
    """
    if z is None:
        yield
        return
    params = dict(model.named_parameters())
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, d in decomposition.items():
                p = params[name]
                saved[name] = p.detach().clone()
                p.add_(correction(d, z[name].detach().to(device=p.device, dtype=torch.float32)).to(p.dtype))
        yield
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                params[name].copy_(original)


def svf_parameter_count(decomposition: Mapping[str, Decomposition]) -> int:
    """Numbers in one expert: one scale per singular value of each matrix."""
    return sum(d.rank for d in decomposition.values())


def lora_parameter_count(model: torch.nn.Module, names: Sequence[str], rank: int = 16) -> int:
    """Numbers in a rank-`rank` LoRA on the same matrices: r * (in + out) each."""
    params = dict(model.named_parameters())
    return sum(rank * (params[n].shape[0] + params[n].shape[1]) for n in names)
