"""The Quiet-STaR objective: teacher-forced NLL after each thought plus REINFORCE on the thought tokens.

From a `ThoughtRollout` (paper sec. 4.3-4.4 and the authors' code):
- NLL: the mixed predictions of the next `n_true` true tokens after every thought (each talk step averaged
  over its scored targets, then over steps), blended with the ordinary next-token NLL by `base_nll_weight`
  (0.5 in the authors' code) so that the model keeps predicting well without thinking.
- REINFORCE: the reward of a thought is the log-likelihood it gives the `n_true` true tokens minus the mean
  of that quantity over the thoughts sampled at the same position (the paper's baseline); only its positive
  part is used (the authors' `remove_negative_rewards`). Loss = -reward * log p(thought tokens).
`loss_mask[b, i]` says whether token i is a scored target (answer tokens in this project's data).
Exercise: `pytest tests/stages/quietstar/test_quietstar_loss.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...models import token_logprobs
from .parallel import ThoughtRollout, gather_at, shifted


@dataclass
class LossParts:
    """The total (differentiable) and its parts as floats, for logging."""

    total: torch.Tensor
    base_nll: float
    talk_nll: float
    reinforce: float
    mean_reward: float
    thought_gain: float  # mean log-prob gain of the next true token, mixed vs base
    mean_mix_weight: float


def talk_targets(
    input_ids: torch.Tensor, loss_mask: torch.Tensor, at: torch.Tensor, slot_valid: torch.Tensor, n_true: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, scored), each (N, B, P): talk step k of the slot after position j predicts token j + 1 + k."""
    targets = torch.stack([gather_at(input_ids, at + k + 1) for k in range(n_true)])
    scored = torch.stack([gather_at(loss_mask.bool(), at + k + 1, fill=False) & slot_valid for k in range(n_true)])
    return targets, scored


def talk_logprobs(rollout: ThoughtRollout, lm_head, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under the mixed predictions, (B, K, N, P)."""
    logits = lm_head(rollout.mixed_hidden)
    return token_logprobs(logits, targets.permute(1, 0, 2)[:, None].expand(logits.shape[:-1]))


def base_logprobs(base_hidden: torch.Tensor, lm_head, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(x_{j+1}) under the ordinary predictions, (B, L); the last position gets 0."""
    return token_logprobs(lm_head(base_hidden), shifted(input_ids, 1, dim=1, fill=0))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def thought_advantage(continuation: torch.Tensor, mix_weight: torch.Tensor) -> torch.Tensor:
    """Each thought's reward minus the mean over the thoughts at its position, (B, K, P).

    Equal rewards give exactly zero advantage, whatever the kernels: the mean of K equal floats need not
    round back to that float ((a + a + a) / 3 != a in general), so the rewards are first taken relative to
    the first thought (exactly 0 when equal) and only those differences are averaged. Slots where every
    thought's mixing weight is exactly 0 (the head's zero-initialised output layer) predict exactly as the
    base model does, so no thought there can be better than another: their advantage is set to 0.
    """
    relative = continuation - continuation[:, :1]
    advantage = relative - relative.mean(dim=1, keepdim=True)
    inert = (mix_weight == 0).all(dim=2).all(dim=1, keepdim=True)  # (B, 1, P)
    return advantage.masked_fill(inert, 0.0)


def quietstar_loss(
    rollout: ThoughtRollout,
    lm_head,
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    base_nll_weight: float = 0.5,
    reinforce_weight: float = 1.0,
    positive_rewards_only: bool = True,
) -> LossParts:
    """Combine NLL and REINFORCE as described in the module docstring."""
    n_true = rollout.mixed_hidden.shape[2]
    targets, scored = talk_targets(input_ids, loss_mask, rollout.at, rollout.slot_valid, n_true)
    logp = talk_logprobs(rollout, lm_head, targets)              # (B, K, N, P)
    scored_bknl = scored.permute(1, 0, 2).unsqueeze(1).expand_as(logp)

    step_nll = [
        _masked_mean(-logp[:, :, k], scored_bknl[:, :, k]) for k in range(n_true) if scored[k].any()
    ]
    talk_nll = torch.stack(step_nll).mean() if step_nll else logp.sum() * 0.0
    base_lp = base_logprobs(rollout.base_hidden, lm_head, input_ids)
    base_nll = _masked_mean(-base_lp, shifted(loss_mask.bool(), 1, dim=1, fill=False))

    # reward: log-likelihood of the true continuation given this thought, relative to the other thoughts here
    with torch.no_grad():
        continuation = (logp * scored_bknl).sum(dim=2)           # (B, K, P)
        reward = thought_advantage(continuation, rollout.mix_weight)
        if positive_rewards_only:
            reward = reward.clamp(min=0.0)
    rewarded = scored.any(0).unsqueeze(1).expand_as(reward)       # slots with at least one scored target
    reinforce = _masked_mean(-reward * rollout.thought_logprob.float(), rewarded)
    thinks = scored[0].unsqueeze(1).expand_as(reward)             # slots whose next token is scored

    nll = base_nll_weight * base_nll + (1.0 - base_nll_weight) * talk_nll
    total = nll + reinforce_weight * reinforce
    with torch.no_grad():
        gain = _masked_mean(logp[:, :, 0] - gather_at(base_lp, rollout.at).unsqueeze(1), thinks)
        weight = _masked_mean(rollout.mix_weight[:, :, 0].float(), thinks)
        mean_reward = _masked_mean(reward, rewarded)
    return LossParts(
        total=total,
        base_nll=float(base_nll.detach()),
        talk_nll=float(talk_nll.detach()),
        reinforce=float(reinforce.detach()),
        mean_reward=float(mean_reward),
        thought_gain=float(gain),
        mean_mix_weight=float(weight),
    )
