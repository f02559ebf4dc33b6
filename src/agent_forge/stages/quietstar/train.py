"""Quiet-STaR fine-tuning through the shared supervised loop: the loss function is the only new part.

`train_quietstar` adds the thought tokens, builds a zero-initialised mixing head and the gradient-weighted
delimiter embeddings, and runs `training.supervised.train_supervised` with a loss that samples thoughts after
every token in parallel and returns NLL + REINFORCE. The model, the head and the two delimiter rows are
trained together; the rows are written back into the embedding matrix at the end. Exercise:
`pytest tests/stages/quietstar/test_quietstar_stage.py`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ...training.supervised import BatchFn, TrainLog, answer_cross_entropy, answer_cross_entropy_of, train_supervised
from .loss import LossParts, quietstar_loss
from ...models.formats.thoughts import MixingHead
from .parallel import ThoughtShape, think_in_parallel, thinking_positions
from ...inference.thought_sampling import ThoughtSampler
from ...models.formats.thoughts import ThoughtTokens, add_thought_tokens
from .embedding import ThoughtEmbedding


@dataclass
class QuietStarObjective:
    """`loss_fn(model, batch)` for `train_supervised`; keeps every step's loss parts for the metrics."""

    head: MixingHead
    embed: ThoughtEmbedding
    tokens: ThoughtTokens
    shape: ThoughtShape
    temperature: float
    base_nll_weight: float
    reinforce_weight: float
    positive_rewards_only: bool
    seed: int
    anchor: torch.nn.Module | None = None  # the entering model, frozen
    anchor_weight: float = 0.0
    history: list[LossParts] = field(default_factory=list)
    anchor_kl: list[float] = field(default_factory=list)

    def __call__(self, model, batch: dict) -> torch.Tensor:
        # a fresh noise stream per step; the step index makes the run reproducible from the seed alone
        sampler = ThoughtSampler(self.tokens, self.temperature, seed=self.seed * 100_003 + len(self.history))
        scored = batch["labels"] != -100
        lm_head = self.embed.output_head()
        rollout = think_in_parallel(
            model, self.head, batch["input_ids"], batch["attention_mask"], tokens=self.tokens, shape=self.shape,
            sampler=sampler, embed=self.embed, lm_head=lm_head,
            think=thinking_positions(batch["attention_mask"], scored, self.shape.n_true),
        )
        parts = quietstar_loss(
            rollout, lm_head, batch["input_ids"], scored,
            base_nll_weight=self.base_nll_weight, reinforce_weight=self.reinforce_weight,
            positive_rewards_only=self.positive_rewards_only,
        )
        self.history.append(parts)
        if self.anchor is None or self.anchor_weight == 0:
            return parts.total
        kl = anchor_kl(self.anchor, lm_head(rollout.base_hidden), batch, scored)
        self.anchor_kl.append(float(kl.detach()))
        return parts.total + self.anchor_weight * kl

    def summary(self, tail: int = 20) -> dict[str, float]:
        """Means of the last `tail` steps' loss parts."""
        last = self.history[-tail:]
        if not last:
            return {}
        keys = ["base_nll", "talk_nll", "reinforce", "mean_reward", "thought_gain", "mean_mix_weight"]
        summary = {k: round(sum(getattr(p, k) for p in last) / len(last), 4) for k in keys}
        if self.anchor_kl:
            summary["anchor_kl"] = round(sum(self.anchor_kl[-tail:]) / len(self.anchor_kl[-tail:]), 4)
        return summary


def anchor_kl(anchor, logits: torch.Tensor, batch: dict, scored: torch.Tensor) -> torch.Tensor:
    """KL(anchor || model) of the next-token distributions that predict scored (answer) tokens.

    The anchor is the model that entered the stage: the penalty keeps the ordinary predictions where they
    were (the seed stage's specialists are anchored to their base the same way), so learning to think does
    not cost the agent what it could already do.
    """
    with torch.no_grad():
        reference = anchor(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    predicts_scored = torch.zeros_like(scored)
    predicts_scored[:, :-1] = scored[:, 1:]
    ref_logp = torch.log_softmax(reference[predicts_scored], dim=-1)
    logp = torch.log_softmax(logits.float()[predicts_scored], dim=-1)
    if ref_logp.numel() == 0:
        return logits.sum() * 0.0
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()


@dataclass
class QuietStarTraining:
    head: MixingHead
    tokens: ThoughtTokens
    init: str
    log: TrainLog
    objective: QuietStarObjective


def train_quietstar(model, tokenizer, qc, next_batch: BatchFn, *, seed: int, progress: bool = True) -> QuietStarTraining:
    """Turn `model` into a Quiet-STaR model in place (tokens added, weights trained); return head and logs."""
    tokens, init = add_thought_tokens(
        model, tokenizer, init_from=qc.init_from, start=qc.start_token, end=qc.end_token
    )
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = MixingHead(model.config.hidden_size, depth=qc.mixing_head_depth)
    # the head stays fp32 whatever the model's dtype: it is small and outputs one weight per position
    head = head.to(device=param.device)
    embed = ThoughtEmbedding(model, tokens, grad_weight=qc.embedding_grad_weight)
    anchor = None
    if qc.anchor_kl > 0:
        anchor = copy.deepcopy(model).eval().requires_grad_(False)
    objective = QuietStarObjective(
        head=head, embed=embed, tokens=tokens,
        shape=ThoughtShape(thought_length=qc.thought_length, n_thoughts=qc.n_thoughts, n_true=qc.n_true),
        temperature=qc.train_temperature, base_nll_weight=qc.base_nll_weight,
        reinforce_weight=qc.reinforce_weight, positive_rewards_only=qc.positive_rewards_only, seed=seed,
        anchor=anchor, anchor_weight=qc.anchor_kl,
    )
    params = [p for p in model.parameters()] + list(head.parameters()) + list(embed.parameters())
    train = qc.train
    log = train_supervised(
        model, tokenizer, next_batch, steps=train.steps, lr=train.lr, warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay, loss_fn=objective, params=params, desc="quietstar: think", progress=progress,
    )
    embed.write_back()
    head.eval()
    return QuietStarTraining(head=head, tokens=tokens, init=init, log=log, objective=objective)


def anchored_control_loss(model, weight: float):
    """The no-thought control's loss: answer cross-entropy plus the same anchor the Quiet-STaR run has, so the
    comparison differs only in the thoughts."""
    if weight == 0:
        return answer_cross_entropy
    anchor = copy.deepcopy(model).eval().requires_grad_(False)

    def loss(net, batch: dict) -> torch.Tensor:
        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ce = answer_cross_entropy_of(logits, batch["labels"])
        return ce + weight * anchor_kl(anchor, logits, batch, batch["labels"] != -100)

    return loss
