"""BitLinear: the BitNet b1.58 forward, latent weights, warm-up strength, sub-layer norm, gradients."""

import torch
from torch import nn

from agent_forge.models.formats.ternary.layer import BitLinear


def _layer(sub_norm=False, bias=True, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(16, 8, bias=bias)
    return linear, BitLinear.from_linear(linear, sub_norm=sub_norm)


def test_forward_equals_int8_activations_times_ternary_weights():
    linear, layer = _layer()
    x = torch.randn(3, 5, 16)
    w = linear.weight.detach()
    gamma = w.abs().mean()
    w_q = (w / gamma).round().clamp(-1, 1) * gamma
    s = 127 / x.abs().amax(-1, keepdim=True)
    x_q = (x * s).round().clamp(-128, 127) / s
    expected = x_q @ w_q.T + linear.bias.detach()
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert torch.allclose(layer.integer_forward(x), expected, atol=1e-5)


def test_effective_weights_are_ternary_times_the_scale():
    _, layer = _layer()
    codes, gamma = layer.ternary()
    assert set(codes.unique().tolist()) <= {-1, 0, 1}
    ratio = layer.effective_weight() / gamma
    assert torch.equal(ratio.round(), codes.float())
    assert torch.allclose(ratio, codes.float(), atol=1e-6)


def test_strength_zero_is_the_original_linear():
    linear, layer = _layer(sub_norm=True)
    layer.strength = 0.0
    x = torch.randn(4, 16)
    assert torch.equal(layer(x), linear(x))


def test_from_linear_shares_parameters_so_training_updates_latent_weights():
    linear, layer = _layer()
    assert layer.weight is linear.weight and layer.bias is linear.bias
    before = layer.weight.detach().clone()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(6, 16)).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(layer.weight.detach(), before)
    assert layer.weight.dtype == torch.float32  # latent weights stay full precision


def test_gradient_through_quantization_is_the_straight_through_one():
    _, layer = _layer(bias=False)
    x = torch.randn(5, 16, requires_grad=True)
    grad_out = torch.randn(5, 8)
    layer(x).backward(grad_out)
    # STE: d/dW of x_q W_q^T is treated as d/dW of x_q W^T, so dW = grad_out^T x_q and dx = grad_out W_q
    s = 127 / x.detach().abs().amax(-1, keepdim=True)
    x_q = (x.detach() * s).round() / s
    assert torch.allclose(layer.weight.grad, grad_out.T @ x_q, atol=1e-5)
    assert torch.allclose(x.grad, grad_out @ layer.effective_weight(), atol=1e-5)


def test_sub_norm_normalizes_the_input_before_quantizing():
    _, layer = _layer(sub_norm=True, bias=False)
    x = torch.randn(2, 16)
    # the input's scale no longer matters: the norm removes it before quantization
    assert torch.allclose(layer(x), layer(10 * x), atol=1e-5)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"weight", "rms_norm.weight"}


def test_half_strength_lies_between_full_precision_and_ternary():
    linear, layer = _layer(bias=False)
    x = torch.randn(4, 16)
    layer.strength = 1.0
    ternary = layer(x)
    layer.strength = 0.5
    half = layer(x)
    # weight and activation are each halfway, so the output differs from both ends
    assert not torch.allclose(half, ternary) and not torch.allclose(half, linear(x))
    expected_w = linear.weight.detach() + 0.5 * (layer.ternary()[1] * layer.ternary()[0].float() - linear.weight.detach())
    assert torch.allclose(layer.effective_weight(), expected_w, atol=1e-6)
