"""Grokfast's EMA gradient filter (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients").

The paper treats the sequence of gradients of each parameter as a signal over training steps and amplifies
its slow (low-frequency) component, which it finds drives generalisation: keep an exponential moving average
`mu <- alpha * mu + (1 - alpha) * g` per parameter and replace the gradient by `g + lamb * mu` before the
optimiser step. The paper's defaults for the EMA variant are alpha = 0.98 and lamb = 2.0; the average starts
from the first gradient seen. The filter plugs into the shared loops as their `grad_filter` callable.

Exercise: `pytest tests/training/test_grokfast.py`.
"""

from __future__ import annotations

import torch

from ..errors import ForgeError


class GrokfastEMA:
    """Stateful gradient filter: call it on the model after `backward()` and before `optimizer.step()`.

    The state is keyed by parameter name, so one filter follows one model across several training loops
    (e.g. every cycle of the curriculum) and keeps its memory of slow gradients between them.
    """

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0):
        if not 0.0 <= alpha < 1.0:
            raise ForgeError(f"grokfast alpha must be in [0, 1), got {alpha}")
        if lamb < 0:
            raise ForgeError(f"grokfast lamb must be >= 0, got {lamb}")
        self.alpha = alpha
        self.lamb = lamb
        self.averages: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            grad = param.grad
            if grad is None or not param.requires_grad:
                continue
            average = self.averages.get(name)
            if average is None or average.shape != grad.shape:
                # starting from the first gradient (not zero) avoids a biased, too-small slow component early on
                average = grad.detach().clone()
            else:
                average.mul_(self.alpha).add_(grad, alpha=1.0 - self.alpha)
            self.averages[name] = average
            grad.add_(average, alpha=self.lamb)

    def reset(self) -> None:
        """Forget the slow gradients (e.g. when the model's weights were replaced by an average)."""
        self.averages.clear()
