"""token_logprobs: the one gather of target log-probabilities that scorers and trainers share."""

import torch

from agent_forge.models import token_logprobs


def test_matches_the_log_softmax_of_each_target():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    expected = torch.stack([torch.stack([torch.log_softmax(logits[b, t], -1)[targets[b, t]] for t in range(5)])
                            for b in range(2)])
    assert torch.allclose(token_logprobs(logits, targets), expected, atol=1e-6)


def test_half_precision_logits_are_scored_in_float32_and_ignore_labels_do_not_fail():
    logits = torch.randn(1, 4, 7).to(torch.bfloat16)
    targets = torch.tensor([[3, -100, 0, 6]])
    out = token_logprobs(logits, targets)
    assert out.dtype == torch.float32
    # an ignored position is scored as token 0 (callers mask it)
    assert out[0, 1] == torch.log_softmax(logits.float(), -1)[0, 1, 0]


def test_gradients_flow_to_the_logits():
    logits = torch.randn(3, 5, requires_grad=True)
    token_logprobs(logits, torch.tensor([0, 4, 2])).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
