"""Choosing each row's next token in a shared decode step: greedy, or sampled with the row's own generator.

Greedy rows take the argmax exactly as `agent_forge.models.generate` does, so a greedy request gets the same
tokens whatever else shares its batch. A sampled row draws from its tempered distribution, restricted to its
top-p nucleus, with its own `torch.Generator` seeded from the request's `seed`: the same request with the same
seed gets the same answer however the batch around it changes.

Exercise: `pytest tests/serve/test_engine.py`.
"""

from __future__ import annotations

import secrets
from typing import Sequence

import torch


def row_generator(seed: int | None) -> torch.Generator:
    """A CPU generator for one sampled row (a random seed when the request gave none)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return generator


def choose_tokens(
    logits: torch.Tensor, temperatures: Sequence[float], top_ps: Sequence[float],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """One token per row of `logits` (rows x vocab)."""
    chosen = logits.argmax(-1).tolist()
    for row, temperature in enumerate(temperatures):
        if temperature > 0:
            chosen[row] = _sample(logits[row], temperature, top_ps[row], generators[row])
    return chosen


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_idx = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (as models.generate does)
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, sorted_idx, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())
