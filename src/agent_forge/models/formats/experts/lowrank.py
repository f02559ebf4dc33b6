"""Option (b): an expert as a rank-r correction beside a layer whose weight cannot be scaled (the packed
2-bit ternary layer keeps no latent weight to add to).

With the top-r singular directions of the latent weight, W = U diag(S) V^T, an expert z contributes

    W' - W ~= U_r diag(d_r) V_r^T,   d = S (z c - 1),  c = sum(S) / sum(S z)   (`scaled_singular_values`)

so the layer's output gains ((x @ V_r) * d_r) @ U_r^T, computed in fp32 beside the packed matmul:
y = packed(h) + ((h @ V_r) * d_r) @ U_r^T, where h is the input the matmul sees (after the layer's sub-layer
norm when it has one). On a `PackedBitLinear` the layer's forward is wrapped for the duration (instance
attribute, removed afterwards), so h is computed once; any other layer gets a forward hook that recomputes h.
Decode on the packed path is dominated by per-op overhead, so the correction is two ops (`mm`, `addmm`); the
whole-step C decoder (`ternary.decode.PackedDecoder`) reads the same factors from the layer (`CORRECTION`) and
adds the correction inside its step, so a held expert keeps batch-1 greedy decoding on the C path. The rescale c needs every singular value, so a truncated decomposition keeps
the full S (a few hundred numbers) and only r columns of U and V. At r = full rank on an unquantized layer the
hook computes exactly the latent path's W' (up to float rounding); at r < rank the dropped part of the
correction is ||d[r:]|| / ||d|| of it in Frobenius norm (`dropped_share`: U and V are orthonormal).

Exercise: `pytest tests/models/test_experts_lowrank.py`.
"""

from __future__ import annotations

from contextlib import contextmanager
from itertools import chain
from typing import Iterator, Mapping

import torch

from ....errors import ForgeError
from ..ternary.decode import CORRECTION
from ..ternary.packed import PackedBitLinear
from .svf import Decomposition, applied, scaled_singular_values


def truncate(d: Decomposition, rank: int | None) -> Decomposition:
    """The top-`rank` singular directions of `d` (all of them when `rank` is None or not smaller); S stays whole."""
    if rank is not None and rank < 1:
        raise ForgeError(f"a low-rank expert correction needs rank >= 1, got {rank}")
    r = d.kept if rank is None else min(int(rank), d.kept)
    return Decomposition(d.U[:, :r].contiguous(), d.S.clone(), d.V[:, :r].contiguous())


def delta(d: Decomposition, z: torch.Tensor) -> torch.Tensor:
    """d = S (z c - 1) for every singular value (the full correction's spectrum)."""
    return scaled_singular_values(d, z.to(d.S.device, torch.float32)) - d.S


def dropped_share(d: Decomposition, z: torch.Tensor, rank: int) -> float:
    """||d[rank:]|| / ||d||: the share of the correction (Frobenius norm) that a rank-`rank` truncation drops."""
    full = delta(d, z)
    total = float(full.norm())
    return float(full[rank:].norm()) / total if total > 0 else 0.0


def factors(d: Decomposition, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [in, r], B [r, out]) with W' - W ~= (A @ B)^T: the correction is x -> (x @ A) @ B."""
    r = d.kept
    return (d.V * delta(d, z)[:r]).contiguous(), d.U.T.contiguous()


class _CorrectionHook:
    """Forward hook adding ((h @ A) @ B) to a layer's output, h being the input its matmul sees."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.a, self.b = a, b

    def __call__(self, module, args, output):
        x = args[0]
        if hasattr(module, "normalized_input"):  # BitLinear (latent): its own strength-blended sub-layer norm
            x = module.normalized_input(x)
        elif getattr(module, "rms_norm", None) is not None:  # PackedBitLinear: norm, then the packed matmul
            x = module.rms_norm(x)
        extra = (x.to(self.a.dtype) @ self.a) @ self.b
        return output + extra.to(output.dtype)


def _corrected_packed_forward(layer: PackedBitLinear, a: torch.Tensor, b: torch.Tensor):
    """`layer.forward` plus the correction, the sub-layer norm computed once (the packed path is fp32 only)."""
    norm, matmul = layer.rms_norm, layer.matmul

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = norm(x) if norm is not None else x
        y = matmul(h)
        flat = h.reshape(-1, h.shape[-1])
        return torch.addmm(y.reshape(-1, y.shape[-1]), flat @ a, b).view(y.shape)

    return forward


def module_name(parameter_name: str) -> str:
    """'model.layers.0.mlp.up_proj.weight' -> 'model.layers.0.mlp.up_proj'."""
    return parameter_name[: -len(".weight")] if parameter_name.endswith(".weight") else parameter_name


@contextmanager
def corrected(model: torch.nn.Module, decomposition: Mapping[str, Decomposition],
              z: Mapping[str, torch.Tensor] | None, trainable: bool = False) -> Iterator[None]:
    """Hold the expert as rank-r corrections beside each chosen layer (forward hooks); removed on exit.

    `z=None` is the base model (nothing changes). The model's own weights are never touched. With `trainable`
    the corrections keep their graph to z, so a loss on the model's output reaches the expert (training option
    (b): the ternary matmul stays as it is and the full-precision correction beside it learns).
    """
    if z is None:
        yield
        return
    handles, wrapped = [], []
    try:
        for name, d in decomposition.items():
            module = model.get_submodule(module_name(name))
            device = next(chain(module.parameters(), module.buffers()), d.U).device
            a, b = factors(d, z[name].float() if trainable else z[name].detach().float())
            a, b = a.to(device), b.to(device)
            if isinstance(module, PackedBitLinear) and "forward" not in vars(module) and not trainable:
                module.forward = _corrected_packed_forward(module, a, b)  # shadows the class's forward
                setattr(module, CORRECTION, (a, b))  # what the whole-step C decoder adds itself
                wrapped.append(module)
            else:
                handles.append(module.register_forward_hook(_CorrectionHook(a, b)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in wrapped:
            del module.forward  # the class's own forward again
            delattr(module, CORRECTION)


# how an expert is held on a model with latent weights: (a) W' written into the weights (a ternary layer then
# re-quantizes it) or (b) the correction added beside the unchanged layer in full precision, as a packed layer
# always takes it; the experts stage measures both (`experts.application`)
APPLICATIONS = ("weights", "correction")


@contextmanager
def held(model: torch.nn.Module, decomposition: Mapping[str, Decomposition], z: Mapping[str, torch.Tensor] | None,
         application: str = "weights") -> Iterator[None]:
    """Hold an expert (or mixture) z while the block runs, as `application` says: "weights" (`svf.applied`, the
    weights restored bit for bit afterwards) or "correction" (`corrected`, hooks removed afterwards)."""
    if application not in APPLICATIONS:
        raise ForgeError(f"unknown expert application {application!r} (known: {', '.join(APPLICATIONS)})")
    with (applied if application == "weights" else corrected)(model, decomposition, z):
        yield


__all__ = ["APPLICATIONS", "corrected", "delta", "dropped_share", "factors", "held", "module_name", "truncate"]
