"""Grokfast EMA filter: the update rule against hand-computed values, and its effect on a noisy problem."""

import pytest
import torch

from agent_forge.errors import ForgeError
from agent_forge.training.grokfast import GrokfastEMA


def _set_grad(param, values):
    param.grad = torch.tensor(values, dtype=torch.float32)


def test_filter_matches_hand_computed_values():
    model = torch.nn.Linear(2, 1, bias=False)
    filt = GrokfastEMA(alpha=0.5, lamb=2.0)
    _set_grad(model.weight, [[1.0, -2.0]])
    filt(model)
    # first step: the average is the gradient itself -> g + 2 g
    assert torch.allclose(model.weight.grad, torch.tensor([[3.0, -6.0]]))
    _set_grad(model.weight, [[3.0, 0.0]])
    filt(model)
    # mu = 0.5 * [1, -2] + 0.5 * [3, 0] = [2, -1]; g + 2 mu = [7, -2]
    assert torch.allclose(model.weight.grad, torch.tensor([[7.0, -2.0]]))


def test_lamb_zero_leaves_gradients_unchanged():
    model = torch.nn.Linear(3, 2)
    filt = GrokfastEMA(alpha=0.9, lamb=0.0)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        before = [p.grad.clone() for p in model.parameters()]
        filt(model)
        for b, p in zip(before, model.parameters()):
            assert torch.equal(b, p.grad)


def test_slow_component_is_amplified_over_noise():
    # gradients = constant drift + alternating noise; after filtering, the drift dominates far more
    model = torch.nn.Linear(1, 1, bias=False)
    filt = GrokfastEMA(alpha=0.9, lamb=5.0)
    drift, noise = 0.1, 1.0
    out = []
    for step in range(200):
        _set_grad(model.weight, [[drift + noise * (-1) ** step]])
        filt(model)
        out.append(float(model.weight.grad))
    tail = torch.tensor(out[-50:])
    # mean of the filtered signal ~ (1 + lamb) * drift, while the oscillation is barely amplified
    assert tail.mean().item() == pytest.approx(6 * drift, rel=0.1)
    assert (tail.max() - tail.min()).item() < 2 * noise * 1.6


def test_bad_hyperparameters_raise_forge_error():
    with pytest.raises(ForgeError):
        GrokfastEMA(alpha=1.0)
    with pytest.raises(ForgeError):
        GrokfastEMA(lamb=-1)
