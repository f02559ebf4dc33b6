"""Choosing thought tokens reproducibly, whatever order the positions are visited in.

Thoughts are drawn with the Gumbel-max trick: token = argmax(logits / temperature + G), G ~ Gumbel(0, 1),
which samples exactly from softmax(logits / temperature). The noise for thought step `s` is one tensor over
(row, position, vocabulary) generated from `(seed, s)` alone, so the parallel implementation (all positions in
one call) and the per-position reference (one position at a time) read the same noise for the same position
and therefore draw the same thoughts. Temperature 0 means greedy. Exercise:
`pytest tests/stages/quietstar/test_quietstar_sampling.py`.
"""

from __future__ import annotations

import torch

from ..models.formats.thoughts.tokens import ThoughtTokens, mask_thought_logits
from ..models.logprobs import token_logprobs

_STEP_STRIDE = 1_000_003  # keeps (seed, step) pairs from colliding for any realistic number of steps


class ThoughtSampler:
    """Samples thought tokens (delimiters masked) and returns their log-probabilities for REINFORCE."""

    def __init__(self, tokens: ThoughtTokens, temperature: float = 1.0, seed: int = 0):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.tokens = tokens
        self.temperature = float(temperature)
        self.seed = int(seed)

    def noise(self, step: int, shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
        """Gumbel(0, 1) noise for thought step `step`, a pure function of (seed, step, shape, device type).

        Drawn on the logits' device, so a GPU run does not move a (rows x length x vocab) tensor per step.
        """
        generator = torch.Generator(device=device).manual_seed(self.seed * _STEP_STRIDE + step)
        uniform = torch.rand(shape, generator=generator, dtype=torch.float32, device=device)
        tiny = torch.finfo(torch.float32).tiny
        return -torch.log(-torch.log(uniform.clamp(min=tiny, max=1.0 - 1e-7)))

    def scaled_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits of the sampling distribution (temperature 0 scores under temperature 1), in float32."""
        scale = self.temperature if self.temperature > 0 else 1.0
        return mask_thought_logits(logits.float(), self.tokens) / scale

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the sampling distribution (temperature 0 scores under temperature 1)."""
        return torch.log_softmax(self.scaled_logits(logits), dim=-1)

    def choose(self, logits: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Token ids from `logits` (..., vocab), with `noise` of the same shape (ignored when greedy)."""
        masked = mask_thought_logits(logits.detach().float(), self.tokens)
        if self.temperature == 0 or noise is None:
            return masked.argmax(dim=-1)
        return (masked / self.temperature + noise.to(masked.device)).argmax(dim=-1)

    def sample(self, logits: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample one token per row/position of `logits` (..., vocab); returns (ids, differentiable log-prob)."""
        noise = None if self.temperature == 0 else self.noise(step, tuple(logits.shape), logits.device)
        ids = self.choose(logits, noise)
        logp = token_logprobs(self.scaled_logits(logits), ids)
        return ids, logp
