"""The mixing head: how much of the post-thought prediction to use at each position.

A shallow MLP reads the hidden state of the ordinary (no-thought) prediction and the hidden state after the
thought, concatenated, and outputs one weight w per position. The prediction is the interpolation
`base + w * (thought - base)`. Following the authors' code, the interpolation is done on the final hidden
states and the model's LM head is applied afterwards; for an affine LM head (every causal LM this project
loads) that is exactly the interpolation of the two logit vectors the paper describes, at a fraction of the
cost. The last layer starts at zero, so w = 0 and an untrained head predicts exactly as the base model does.

Stored next to the model as `quietstar_head.safetensors` (tensors + shape metadata), see `checkpoint.py`.
Exercise: `pytest tests/stages/quietstar/test_quietstar_mixing.py`.
"""

from __future__ import annotations

import torch
from torch import nn


class MixingHead(nn.Module):
    """MLP([h_base, h_thought]) -> w; `depth` linear layers with ReLU between them (paper: shallow)."""

    def __init__(self, hidden_size: int, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"mixing head depth must be >= 1, got {depth}")
        self.hidden_size = hidden_size
        self.depth = depth
        layers: list[nn.Module] = []
        width = 2 * hidden_size
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden_size), nn.ReLU()]
            width = hidden_size
        layers.append(nn.Linear(width, 1, bias=False))
        self.mlp = nn.Sequential(*layers)
        self.reset_output()

    @property
    def output(self) -> nn.Linear:
        """The last layer (the one initialised to zero)."""
        return self.mlp[-1]

    @torch.no_grad()
    def reset_output(self) -> None:
        """Zero the last layer: w = 0 everywhere, i.e. the base model's predictions exactly."""
        self.output.weight.zero_()

    def weight(self, base_hidden: torch.Tensor, thought_hidden: torch.Tensor) -> torch.Tensor:
        """The mixing weight w, shape `base_hidden.shape[:-1]`."""
        features = torch.cat([base_hidden, thought_hidden], dim=-1).to(self.output.weight.dtype)
        return self.mlp(features).squeeze(-1).to(base_hidden.dtype)

    def forward(self, base_hidden: torch.Tensor, thought_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed hidden state, w). Shapes of both inputs must match (..., hidden)."""
        w = self.weight(base_hidden, thought_hidden)
        mixed = base_hidden + w.unsqueeze(-1) * (thought_hidden - base_hidden)
        return mixed, w
