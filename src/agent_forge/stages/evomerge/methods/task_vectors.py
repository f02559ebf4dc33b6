"""Merges of task vectors against a shared base: task arithmetic, TIES, DARE-TIES and DARE-linear.

All four are one computation with two switches, as in mergekit's "generalized task arithmetic":
  1. task vectors `d_i = x_i - base`, each sparsified: none (task arithmetic), trimmed to the largest
     magnitudes (TIES), or randomly dropped with rescaling (DARE);
  2. weighted: `d_i <- w_i * d_i`;
  3. combined: a plain sum (task arithmetic, DARE-linear), or TIES' disjoint merge that keeps only entries
     agreeing with the elected sign and, when normalising, divides by the sum of the weights that agreed;
  4. `merged = base + lambda * combined`.
Defaults follow mergekit: TIES normalises and does not rescale, DARE rescales and does not normalise.
References: Ilharco et al. 2023 (task arithmetic), Yadav et al. 2023 (TIES), Yu et al. 2024 (DARE).
Exercise: `python -m pytest tests/stages/evomerge/test_methods.py`.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from ....errors import ForgeError
from .linear import compute_dtype
from .sparsify import elect_sign_mask, random_drop, trim_by_magnitude

Sparsify = Literal["none", "magnitude", "random"]


def generalized_task_arithmetic(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    densities: Sequence[float] | None = None,
    *,
    sparsify: Sparsify = "none",
    sign_consensus: bool = False,
    normalize: bool = False,
    rescale: bool = False,
    lam: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One tensor of a task-vector merge; see the module docstring for the steps."""
    if len(tensors) != len(weights):
        raise ForgeError(f"task-vector merge got {len(tensors)} tensors but {len(weights)} weights")
    if densities is None:
        densities = [1.0] * len(tensors)
    if not tensors:
        return base
    dtype = compute_dtype(base)
    base_c = base.to(dtype)
    deltas = torch.empty((len(tensors), *base.shape), dtype=dtype)
    for i, (tensor, density) in enumerate(zip(tensors, densities)):
        delta = tensor.to(dtype) - base_c
        if sparsify == "magnitude":
            delta = trim_by_magnitude(delta, float(density), rescale=rescale)
        elif sparsify == "random":
            delta = random_drop(delta, float(density), generator, rescale=rescale)
        deltas[i] = delta
    w = torch.tensor([float(x) for x in weights], dtype=dtype).reshape(-1, *([1] * base.dim()))
    deltas.mul_(w)
    if sign_consensus:
        mask = elect_sign_mask(deltas).to(dtype)
        combined = (deltas * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        combined = deltas.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        combined = combined / divisor
    if lam != 1:
        combined = combined * lam
    return (base_c + combined).to(base.dtype)


def task_arithmetic(base, tensors, weights, *, lam: float = 1.0, normalize: bool = False) -> torch.Tensor:
    """`base + lam * sum_i w_i (x_i - base)`."""
    return generalized_task_arithmetic(base, tensors, weights, lam=lam, normalize=normalize)


def ties(base, tensors, weights, densities, *, lam: float = 1.0, normalize: bool = True, rescale: bool = False,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """TIES: trim each task vector to `density` by magnitude, elect signs, disjoint (weighted) mean."""
    return generalized_task_arithmetic(base, tensors, weights, densities, sparsify="magnitude", sign_consensus=True,
                                       normalize=normalize, rescale=rescale, lam=lam)


def dare_ties(base, tensors, weights, densities, *, generator: torch.Generator | None, lam: float = 1.0,
              normalize: bool = False, rescale: bool = True) -> torch.Tensor:
    """DARE-TIES: random drop to `density` with rescaling, then TIES' sign election and disjoint merge."""
    return generalized_task_arithmetic(base, tensors, weights, densities, sparsify="random", sign_consensus=True,
                                       normalize=normalize, rescale=rescale, lam=lam, generator=generator)


def dare_linear(base, tensors, weights, densities, *, generator: torch.Generator | None, lam: float = 1.0,
                normalize: bool = False, rescale: bool = True) -> torch.Tensor:
    """DARE-linear: random drop to `density` with rescaling, then a plain weighted sum of task vectors."""
    return generalized_task_arithmetic(base, tensors, weights, densities, sparsify="random", sign_consensus=False,
                                       normalize=normalize, rescale=rescale, lam=lam, generator=generator)
