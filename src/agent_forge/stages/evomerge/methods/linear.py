"""Linear merge: a weighted average of the inputs, tensor by tensor (Wortsman et al. 2022, "model soups").

`merged = sum_i w_i * x_i`, divided by `sum_i w_i` when `normalize` is set (mergekit's `linear` method, whose
default is to normalise). Exercise: `python -m pytest tests/stages/evomerge/test_methods.py -k linear`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ....errors import ForgeError


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """Merges run in float32 (float64 stays float64): bf16/fp16 sums would lose the small task vectors."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def linear(tensors: Sequence[torch.Tensor], weights: Sequence[float], normalize: bool = True) -> torch.Tensor:
    """Weighted sum of same-shaped tensors; with `normalize`, divided by the sum of the weights."""
    if len(tensors) != len(weights):
        raise ForgeError(f"linear merge got {len(tensors)} tensors but {len(weights)} weights")
    first = tensors[0]
    dtype = compute_dtype(first)
    total = float(sum(weights))
    if normalize and abs(total) < 1e-12:
        raise ForgeError("linear merge with normalize=True needs weights that do not sum to zero")
    result = torch.mul(first.to(dtype), float(weights[0]))  # starting from the first term saves a pass over zeros
    for tensor, weight in zip(tensors[1:], weights[1:]):
        result.add_(tensor.to(dtype), alpha=float(weight))
    if normalize:
        result.div_(total)
    return result.to(first.dtype)
