"""Thought sampling: reproducible per (seed, step), distributed as softmax(logits / T), delimiters excluded."""

from __future__ import annotations

import torch

from agent_forge.inference.thought_sampling import ThoughtSampler
from agent_forge.models.formats.thoughts.tokens import ThoughtTokens

TOKENS = ThoughtTokens(start_id=4, end_id=5)


def test_noise_depends_only_on_seed_and_step():
    a, b = ThoughtSampler(TOKENS, 1.0, seed=3), ThoughtSampler(TOKENS, 1.0, seed=3)
    assert torch.equal(a.noise(2, (4, 6)), b.noise(2, (4, 6)))
    assert not torch.equal(a.noise(2, (4, 6)), a.noise(3, (4, 6)))
    assert not torch.equal(a.noise(2, (4, 6)), ThoughtSampler(TOKENS, 1.0, seed=4).noise(2, (4, 6)))


def test_greedy_is_argmax_without_delimiters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 0.5, 9.0, 9.0]])
    ids, logp = ThoughtSampler(TOKENS, 0.0).sample(logits, step=1)
    assert ids.tolist() == [2]
    expected = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0, 0.5]), -1)[2]
    torch.testing.assert_close(logp, expected.view(1))


def test_samples_follow_the_tempered_distribution():
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5, 3.0, 3.0]).expand(20000, 6)
    sampler = ThoughtSampler(TOKENS, 2.0, seed=0)
    ids, logp = sampler.sample(logits, step=1)
    assert not torch.isin(ids, torch.tensor(TOKENS.ids)).any()
    freq = torch.bincount(ids, minlength=6).float() / ids.numel()
    expected = torch.softmax(torch.tensor([1.0, 0.0, -1.0, 0.5]) / 2.0, -1)
    torch.testing.assert_close(freq[:4], expected, atol=0.015, rtol=0)
    # log-probs are those of the same tempered distribution (what REINFORCE differentiates)
    torch.testing.assert_close(logp.exp(), expected[ids])


def test_log_probs_carry_gradients():
    logits = torch.randn(3, 6, requires_grad=True)
    _, logp = ThoughtSampler(TOKENS, 1.0, seed=1).sample(logits, step=1)
    logp.sum().backward()
    assert logits.grad.abs().sum() > 0
    assert logits.grad[:, list(TOKENS.ids)].abs().sum() == 0
