"""SLERP: spherical linear interpolation between two tensors, with the near-colinear fallback to linear.

Each tensor is flattened and treated as one vector. With `cos(theta)` the cosine between the two inputs,
`merged = sin((1-t) theta)/sin(theta) * a + sin(t theta)/sin(theta) * b`; when `|cos(theta)|` exceeds
`dot_threshold` (0.9995, as mergekit) the vectors are nearly colinear and plain `(1-t) a + t b` is used,
since the spherical formula divides by a vanishing sine there. More than two inputs are merged as a chain:
`slerp(t_2, slerp(t_1, x_0, x_1), x_2)`; a recipe gives each layer group its own `t`.
Exercise: `python -m pytest tests/stages/evomerge/test_methods.py -k slerp`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ....errors import ForgeError
from .linear import compute_dtype


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, dot_threshold: float = 0.9995, eps: float = 1e-8) -> torch.Tensor:
    """Interpolate from `a` (t=0) to `b` (t=1) along the great circle between their directions."""
    if a.shape != b.shape:
        raise ForgeError(f"slerp needs tensors of one shape, got {list(a.shape)} and {list(b.shape)}")
    dtype = compute_dtype(a)
    x = a.to(dtype).reshape(-1)
    y = b.to(dtype).reshape(-1)
    norm_x = float(torch.linalg.vector_norm(x))
    norm_y = float(torch.linalg.vector_norm(y))
    # A zero vector has no direction: dividing by 1 keeps the dot at 0 and the result finite.
    norm_x = norm_x if norm_x > eps else 1.0
    norm_y = norm_y if norm_y > eps else 1.0
    # dividing the scalar dot instead of both vectors saves two full-size temporaries (fp32 weights cannot overflow it)
    dot = max(-1.0, min(1.0, float(torch.dot(x, y)) / (norm_x * norm_y))) if x.numel() else 1.0
    if abs(dot) > dot_threshold:
        coef_a, coef_b = 1.0 - t, t
    else:
        theta = math.acos(dot)
        sin_theta = math.sin(theta)
        coef_a = math.sin((1.0 - t) * theta) / sin_theta
        coef_b = math.sin(t * theta) / sin_theta
    return torch.mul(x, coef_a).add_(y, alpha=coef_b).reshape(a.shape).to(a.dtype)


def slerp_chain(tensors: Sequence[torch.Tensor], ts: Sequence[float], dot_threshold: float = 0.9995) -> torch.Tensor:
    """SLERP of several tensors as a left-to-right chain, one `t` per link (len(ts) == len(tensors) - 1)."""
    if len(ts) != len(tensors) - 1:
        raise ForgeError(f"slerp of {len(tensors)} tensors needs {len(tensors) - 1} t values, got {len(ts)}")
    merged = tensors[0]
    for t, tensor in zip(ts, tensors[1:]):
        merged = slerp(float(t), merged, tensor, dot_threshold)
    return merged


def linear_weights_to_chain_t(weights: Sequence[float]) -> list[float]:
    """The chain `t`s whose linear limit equals the normalised weighted average with these weights.

    Linking `x <- (1-t_k) x + t_k x_k` reproduces `sum w_i x_i / sum w_i` when `t_k = w_k / (w_0 + ... + w_k)`;
    used when a recipe flips from linear to SLERP so that the flip starts near where the parent was.
    """
    ts, running = [], float(weights[0])
    for weight in weights[1:]:
        running += float(weight)
        ts.append(float(weight) / running if running > 1e-12 else 0.5)
    return ts
