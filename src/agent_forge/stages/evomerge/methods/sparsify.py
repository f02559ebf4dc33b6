"""Sparsifying a task vector (trim by magnitude, or random drop) and TIES' sign election.

- `trim_by_magnitude` keeps the `density` fraction of entries with the largest magnitude (TIES' "trim";
  at least one entry of a non-empty tensor survives a positive density, as in mergekit).
- `random_drop` keeps each entry with probability `density` (DARE's "drop"), and with `rescale` restores the
  L1 norm of the vector (mergekit's rescaling; in expectation that is DARE's 1/density).
- `elect_sign_mask` marks, per position, the contributions whose sign agrees with the sign of their sum
  (TIES' "elect"; a zero sum counts as positive, a zero entry never agrees).
Exercise: `python -m pytest tests/stages/evomerge/test_methods.py -k "ties or dare"`.
"""

from __future__ import annotations

import torch


def _rescale_l1(original: torch.Tensor, kept: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    before = original.abs().sum()
    after = kept.abs().sum()
    if before < eps or after < eps:
        return kept
    return kept * (before / after)


def trim_by_magnitude(delta: torch.Tensor, density: float, rescale: bool = False) -> torch.Tensor:
    """Zero all but the `density` fraction of largest-magnitude entries."""
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    k = max(1, int(density * delta.numel()))
    flat = delta.reshape(-1)
    keep = torch.topk(flat.abs(), k, sorted=False).indices
    mask = torch.zeros_like(flat)
    mask[keep] = 1
    kept = (flat * mask).reshape(delta.shape)
    return _rescale_l1(delta, kept) if rescale else kept


def random_drop(delta: torch.Tensor, density: float, generator: torch.Generator | None, rescale: bool = True) -> torch.Tensor:
    """Keep each entry with probability `density`; optionally restore the L1 norm of what was dropped."""
    if density >= 1:
        return delta
    mask = torch.bernoulli(torch.full_like(delta, density), generator=generator)
    kept = delta * mask
    return _rescale_l1(delta, kept) if rescale else kept


def elect_sign_mask(weighted_deltas: torch.Tensor) -> torch.Tensor:
    """Boolean mask [n, ...]: entry agrees with the elected (summed) sign at its position."""
    elected = torch.where(weighted_deltas.sum(dim=0) >= 0, 1.0, -1.0).to(weighted_deltas.dtype)
    return weighted_deltas.sign() == elected
