"""The Quiet-STaR objective: teacher-forced NLL over n_true tokens and REINFORCE with the mean-thought baseline."""

from __future__ import annotations

import torch
from quietstar_helpers import batch_of, random_head

from agent_forge.stages.quietstar.loss import quietstar_loss, talk_targets, thought_advantage
from agent_forge.models.formats.thoughts.mixing import MixingHead
from agent_forge.stages.quietstar.parallel import ThoughtShape, think_in_parallel
from agent_forge.inference.thought_sampling import ThoughtSampler
from agent_forge.stages.quietstar.embedding import ThoughtEmbedding

SHAPE = ThoughtShape(thought_length=3, n_thoughts=3, n_true=2)


def _rollout(model, tokens, head, ids, mask, embed=None, seed=0):
    return think_in_parallel(
        model, head, ids, mask, tokens=tokens, shape=SHAPE, sampler=ThoughtSampler(tokens, 1.0, seed=seed), embed=embed
    )


def _answer_mask(ids, mask, prompt_len):
    scored = mask.bool().clone()
    scored[:, :prompt_len] = False
    return scored


def test_nll_and_reward_match_a_direct_computation(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46", "9+9=18"])
    scored = _answer_mask(ids, mask, prompt_len=4)
    lm_head = model.get_output_embeddings()
    with torch.no_grad():
        out = _rollout(model, tokens, random_head(32), ids, mask)
        parts = quietstar_loss(out, lm_head, ids, scored, base_nll_weight=0.25, reinforce_weight=1.0)

        # talk NLL: per step k, mean over (row, thought, slot) whose target x_{j+1+k} is scored
        assert out.slot_valid.sum(1).tolist() == mask.sum(1).tolist()  # thinks after every real token
        logits = lm_head(out.mixed_hidden)
        slots = out.at.shape[1]
        step_means, rewards_raw = [], torch.zeros(2, SHAPE.n_thoughts, slots)
        for k in range(SHAPE.n_true):
            total, count = 0.0, 0
            for b in range(2):
                for p in range(slots):
                    j = int(out.at[b, p])
                    if not out.slot_valid[b, p] or j + 1 + k >= ids.shape[1] or not scored[b, j + 1 + k]:
                        continue
                    for t in range(SHAPE.n_thoughts):
                        lp = torch.log_softmax(logits[b, t, k, p], -1)[ids[b, j + 1 + k]]
                        total, count = total - lp, count + 1
                        rewards_raw[b, t, p] += lp
            step_means.append(total / count)
        talk_nll = sum(step_means) / len(step_means)
        base = model(input_ids=ids, attention_mask=mask).logits
        base_nll = torch.nn.functional.cross_entropy(base[:, :-1][scored[:, 1:]], ids[:, 1:][scored[:, 1:]])
        assert abs(parts.talk_nll - float(talk_nll)) < 1e-4
        assert abs(parts.base_nll - float(base_nll)) < 1e-4

        # REINFORCE: positive part of (reward - mean over the thoughts at that position) times log p(thought),
        # averaged over the slots that have at least one scored target among the next n_true tokens
        advantage = (rewards_raw - rewards_raw.mean(1, keepdim=True)).clamp(min=0)
        terms = [
            -advantage[b, t, p] * out.thought_logprob[b, t, p]
            for b in range(2) for p in range(slots)
            if out.slot_valid[b, p] and any(
                int(out.at[b, p]) + 1 + k < ids.shape[1] and scored[b, int(out.at[b, p]) + 1 + k]
                for k in range(SHAPE.n_true)
            )
            for t in range(SHAPE.n_thoughts)
        ]
        reinforce = sum(terms) / len(terms)
        assert abs(parts.reinforce - float(reinforce)) < 1e-4
        assert parts.mean_reward > 0
        expected_total = 0.25 * base_nll + 0.75 * talk_nll + reinforce
        assert abs(float(parts.total) - float(expected_total)) < 1e-4


def test_one_thought_per_position_has_no_reinforce_signal(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46"])
    out = think_in_parallel(
        model, random_head(32), ids, mask, tokens=tokens, shape=ThoughtShape(3, n_thoughts=1, n_true=2),
        sampler=ThoughtSampler(tokens, 1.0),
    )
    parts = quietstar_loss(out, model.get_output_embeddings(), ids, mask.bool())
    assert parts.reinforce == 0.0 and parts.mean_reward == 0.0


def test_negative_advantages_count_only_when_asked(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46", "max 9 1 4"])
    with torch.no_grad():
        out = _rollout(model, tokens, random_head(32), ids, mask)
    lm_head = model.get_output_embeddings()
    positive = quietstar_loss(out, lm_head, ids, mask.bool(), positive_rewards_only=True)
    signed = quietstar_loss(out, lm_head, ids, mask.bool(), positive_rewards_only=False)
    assert positive.reinforce != signed.reinforce
    assert abs(signed.mean_reward) < 1e-5  # advantages relative to the mean sum to zero per position


def test_gradients_reach_model_head_and_thought_embeddings(tiny_thinker):
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46", "max 9 1 4"])
    lm_head = model.get_output_embeddings()

    # at initialisation (w = 0) the thoughts cannot matter yet: only the head's last layer learns, which is
    # what lets thoughts start to count after the first step. Exact zero by construction (see
    # thought_advantage), on every CPU.
    fresh_head, embed = MixingHead(32), ThoughtEmbedding(model, tokens, grad_weight=100.0)
    quietstar_loss(_rollout(model, tokens, fresh_head, ids, mask, embed=embed), lm_head, ids, mask.bool()).total.backward()
    assert fresh_head.output.weight.grad.abs().sum() > 0
    assert embed.scaled.grad.abs().sum() == 0

    # the same check fails once the zero-init is broken, even slightly: the assertion above can catch a leak
    model.zero_grad()
    nudged, embed = MixingHead(32), ThoughtEmbedding(model, tokens, grad_weight=100.0)
    with torch.no_grad():
        nudged.output.weight.fill_(1e-3)
    quietstar_loss(_rollout(model, tokens, nudged, ids, mask, embed=embed), lm_head, ids, mask.bool()).total.backward()
    assert embed.scaled.grad.abs().sum() > 0

    model.zero_grad()
    head, embed = random_head(32), ThoughtEmbedding(model, tokens, grad_weight=100.0)
    quietstar_loss(_rollout(model, tokens, head, ids, mask, embed=embed), lm_head, ids, mask.bool()).total.backward()
    assert embed.scaled.grad[0].abs().sum() > 0 and embed.scaled.grad[1].abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_equal_rewards_give_exactly_zero_advantage():
    # equal floats whose mean does not round back to them (-5.6292 * 3 / 3 in float32): the plain
    # "reward minus mean" baseline leaves a residue of one ulp, which REINFORCE turns into a gradient
    continuation = torch.tensor(-5.629199028015137).expand(1, 3, 1).clone()
    assert (continuation - continuation.mean(dim=1, keepdim=True)).abs().max() > 0
    live = torch.ones(1, 3, 2, 1)
    assert thought_advantage(continuation, live).abs().max() == 0
    # unequal rewards keep the usual centred advantage
    continuation = torch.tensor([[[1.0], [2.0], [6.0]]])
    assert torch.allclose(thought_advantage(continuation, live), torch.tensor([[[-2.0], [-1.0], [3.0]]]))
    # slots where every thought is mixed in with weight exactly 0 have no advantage
    assert thought_advantage(continuation, torch.zeros(1, 3, 2, 1)).abs().max() == 0


def test_targets_are_the_next_true_tokens():
    ids = torch.tensor([[10, 11, 12, 13]])
    scored = torch.tensor([[False, True, True, True]])
    at = torch.tensor([[0, 1, 2, 3]])
    targets, ok = talk_targets(ids, scored, at, torch.ones_like(at, dtype=torch.bool), n_true=2)
    assert targets[0].tolist() == [[11, 12, 13, 0]] and targets[1].tolist() == [[12, 13, 0, 0]]
    assert ok[0].tolist() == [[True, True, True, False]] and ok[1].tolist() == [[True, True, False, False]]
    # slots list only some positions; filler slots score nothing
    at = torch.tensor([[2, 0]])
    targets, ok = talk_targets(ids, scored, at, torch.tensor([[True, False]]), n_true=2)
    assert targets[:, 0, 0].tolist() == [13, 0] and ok[:, 0].tolist() == [[True, False], [False, False]]


def test_training_on_one_batch_lowers_the_loss(tiny_thinker):
    """A handful of optimiser steps on a fixed batch must reduce the objective (the pieces fit together)."""
    model, tokenizer, tokens = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46", "max 9 1 4\n9"])
    head = MixingHead(32)
    embed = ThoughtEmbedding(model, tokens)
    params = list(model.parameters()) + list(head.parameters()) + list(embed.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for step in range(12):
        out = _rollout(model, tokens, head, ids, mask, embed=embed, seed=step)
        parts = quietstar_loss(out, model.get_output_embeddings(), ids, mask.bool())
        opt.zero_grad()
        parts.total.backward()
        opt.step()
        losses.append(parts.base_nll + parts.talk_nll)
    assert losses[-1] < 0.7 * losses[0]


def test_anchor_kl_is_zero_at_the_anchor_and_pulls_back_towards_it(tiny_thinker):
    import copy

    from agent_forge.stages.quietstar.train import anchor_kl

    model, tokenizer, _ = tiny_thinker
    ids, mask = batch_of(tokenizer, ["12+34=46", "max 9 1 4"])
    batch = {"input_ids": ids, "attention_mask": mask}
    scored = mask.bool().clone()
    scored[:, :4] = False
    anchor = copy.deepcopy(model).eval().requires_grad_(False)
    logits = model(input_ids=ids, attention_mask=mask).logits
    assert abs(float(anchor_kl(anchor, logits, batch, scored).detach())) < 1e-6
    with torch.no_grad():
        model.get_output_embeddings().weight.add_(0.05 * torch.randn_like(model.get_output_embeddings().weight))
    moved = anchor_kl(anchor, model(input_ids=ids, attention_mask=mask).logits, batch, scored)
    assert moved > 1e-4
    moved.backward()
    assert model.get_output_embeddings().weight.grad.abs().sum() > 0
