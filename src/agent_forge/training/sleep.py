"""Sleep: consolidation that keeps earlier levels while the new one is learned.

Two parts, each measurable on its own: (1) replay — a few supervised steps on verified successes drawn evenly
from every (domain, level) key in the replay buffer, so old levels get rehearsed as much as the new one;
(2) weight averaging — the weights are pulled toward a slow copy kept from the previous sleep
(`w <- (1 - a) * w + a * w_slow`, then `w_slow <- w`), the Lookahead-style average that damps the drift a
burst of RL on one level causes. Averaging touches floating-point parameters only (for a ternary model: the
latent weights, which stay ternary in the forward pass).

Shared by the curriculum stage (sleep between its cycles) and the continuous learner (`agent_forge.learning`,
sleep between cycles on logged experience), so it lives here, below both.

Exercise: `pytest tests/stages/curriculum/test_sleep_dream.py`.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from .replay import ReplayBuffer

TrainStep = Callable[[Sequence[tuple[str, str]]], float]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every floating-point parameter (the slow weights)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.is_floating_point()}


@torch.no_grad()
def average_into(model: torch.nn.Module, slow: dict[str, torch.Tensor], weight: float) -> None:
    """w <- (1 - weight) * w + weight * slow, for every parameter the snapshot has."""
    if weight <= 0:
        return
    for name, param in model.named_parameters():
        ref = slow.get(name)
        if ref is not None and ref.shape == param.shape:
            param.mul_(1 - weight).add_(ref.to(param.device), alpha=weight)


def sleep(
    model, replay: ReplayBuffer, slow: dict[str, torch.Tensor] | None, *, train_step: TrainStep, steps: int,
    batch_size: int, average: float, seed: int,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Replay then average; returns the new slow weights and what was done.

    `train_step(pairs)` takes one supervised step and returns its loss (the stage passes its policy-gradient
    trainer's demonstration step, so replay shares the optimiser state instead of restarting Adam).
    """
    rng = random.Random(seed)
    loss = None
    if steps > 0 and len(replay):
        losses = [train_step(replay.sample(batch_size, rng)) for _ in range(steps)]
        loss = round(sum(losses) / len(losses), 4)
    if slow is not None:
        average_into(model, slow, average)
    return snapshot(model), {"replay_loss": loss, "replay_keys": len(replay.keys()), "averaged": slow is not None}
