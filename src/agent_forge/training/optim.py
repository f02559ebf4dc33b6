"""Optimiser and learning-rate schedule shared by every training loop (AdamW, linear warm-up, cosine decay)."""

from __future__ import annotations

import math

import torch


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    params = [p for p in params if p.requires_grad]
    # fused/foreach kernels differ by backend; foreach keeps CPU runs deterministic and fast enough
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), foreach=True)


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """Multiplier on the base lr: linear warm-up, then cosine decay to `floor` of the peak."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
