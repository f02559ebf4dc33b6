"""Policy gradient with verifiable rewards: several samples per prompt, a group baseline, KL to a reference.

For each prompt the caller samples a group of completions and scores each with a verifier. The advantage of a
completion is its reward minus the mean reward of its group (optionally divided by the group's standard
deviation, as GRPO does), so no value network is needed and a prompt whose samples all score alike
contributes nothing. The loss is the advantage-weighted negative log-likelihood of the completion tokens,
averaged over tokens, plus `kl_coef` times a per-token estimate of KL(policy || reference) (the non-negative
"k3" estimator `exp(r) - r - 1` with `r = log p_ref - log p`), which keeps the policy near the model that
entered training. Updates are on-policy (one step per sampled batch), so no importance ratio is needed.

A step may also carry demonstrations (prompt, answer) trained with plain cross-entropy in the same optimiser
step: verified samples kept from earlier (STaR-style replay) or worked solutions for prompts where no sample
succeeded, since reward alone cannot lift a problem whose pass@k is zero.

Used by the curriculum stage and later stages. Exercise: `pytest tests/training/test_policy_gradient.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import ForgeError
from ..models.logprobs import token_logprobs
from ..models.prompting import Segment, encode_pairs, encode_segments, pad_id
from .optim import make_optimizer, set_lr
from .supervised import answer_cross_entropy


@dataclass
class PolicyGradientStats:
    """What one step did: mean reward, fraction of groups with any success, KL, loss parts."""

    loss: float
    pg_loss: float
    kl: float
    demo_loss: float
    mean_reward: float
    solved_groups: float
    n_samples: int


def group_advantages(rewards: Sequence[float], groups: Sequence[int], *, normalize_std: bool = False) -> torch.Tensor:
    """Reward minus the mean reward of the sample's group (optionally over the group's std)."""
    if len(rewards) != len(groups):
        raise ForgeError(f"{len(rewards)} rewards but {len(groups)} group ids")
    r = torch.tensor(list(rewards), dtype=torch.float32)
    g = torch.tensor(list(groups), dtype=torch.long)
    _, inverse = torch.unique(g, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(r) else 0
    counts = torch.zeros(n_groups).index_add_(0, inverse, torch.ones_like(r))
    means = torch.zeros(n_groups).index_add_(0, inverse, r) / counts
    adv = r - means[inverse]
    if normalize_std:
        var = torch.zeros(n_groups).index_add_(0, inverse, adv**2) / counts
        adv = adv / (var.sqrt()[inverse] + 1e-4)
    return adv


def completion_logprobs(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each completion token under `model`, and the mask of completion positions.

    `batch` is `encode_pairs` output: labels are -100 on the prompt and padding, so the mask covers the
    completion and its terminator. Both tensors have shape [batch, length - 1] (position t predicts t + 1).
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != -100
    return token_logprobs(logits, targets), mask


def policy_gradient_loss(
    model: torch.nn.Module,
    batch: dict,
    advantages: torch.Tensor,
    *,
    ref_model: torch.nn.Module | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total loss, policy-gradient part, mean per-token KL) for one encoded batch of completions."""
    logprobs, mask = completion_logprobs(model, batch)
    mask_f = mask.float()
    n_tokens = mask_f.sum().clamp(min=1.0)
    # token-level average: long completions are not down-weighted per token, a known bias of per-sequence means
    pg = -(advantages.to(logprobs.device).unsqueeze(1) * logprobs * mask_f).sum() / n_tokens
    kl = torch.zeros((), device=logprobs.device)
    if ref_model is not None and kl_coef > 0:
        with torch.no_grad():
            ref_logprobs, _ = completion_logprobs(ref_model, batch)
        log_ratio = (ref_logprobs - logprobs).clamp(-20, 20)
        kl = ((log_ratio.exp() - log_ratio - 1.0) * mask_f).sum() / n_tokens
    return pg + kl_coef * kl, pg, kl


class PolicyGradientTrainer:
    """Keeps the optimiser (and its moments) across steps so RL cycles of a stage form one optimisation.

    The learning rate warms up linearly over the first `warmup_steps` steps. Demonstration-only steps
    (`step([], [], [], [], demonstrations=...)`) let replay and other supervised phases share the same
    optimiser state instead of restarting Adam.

    `ref_model` is frozen by the trainer; `grad_filter` (e.g. Grokfast) runs after backward; `params`
    restricts training to a subset of the model's parameters.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        lr: float,
        ref_model: torch.nn.Module | None = None,
        kl_coef: float = 0.02,
        normalize_std: bool = False,
        demo_coef: float = 1.0,
        grad_clip: float = 1.0,
        weight_decay: float = 0.0,
        warmup_steps: int = 10,
        grad_filter: Callable[[torch.nn.Module], None] | None = None,
        params: Sequence[torch.nn.Parameter] | None = None,
    ):
        if lr <= 0:
            raise ForgeError(f"policy-gradient lr must be > 0, got {lr}")
        if kl_coef < 0:
            raise ForgeError(f"kl_coef must be >= 0, got {kl_coef}")
        self.model = model
        self.tokenizer = tokenizer
        self.ref_model = ref_model
        if ref_model is not None:
            ref_model.eval()
            for p in ref_model.parameters():
                p.requires_grad_(False)
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.steps_done = 0
        self.kl_coef = kl_coef
        self.normalize_std = normalize_std
        self.demo_coef = demo_coef
        self.grad_clip = grad_clip
        self.grad_filter = grad_filter
        self.optimizer = make_optimizer(params if params is not None else model.parameters(), lr, weight_decay)
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.device = next(model.parameters()).device

    def _encode(self, prompts: Sequence[str], answers: Sequence[str]) -> dict:
        batch = encode_pairs(self.tokenizer, list(prompts), list(answers))
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def step(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        rewards: Sequence[float],
        groups: Sequence[int],
        *,
        demonstrations: Sequence[tuple[str, str]] = (),
        lr: float | None = None,
    ) -> PolicyGradientStats:
        """One optimiser step on sampled completions given as text (and optional demonstrations).

        Each completion is re-tokenized and followed by the answer terminator; for samples that must be
        scored token for token as they were drawn, use `step_tokens`.
        """
        if not (len(prompts) == len(completions) == len(rewards) == len(groups)):
            raise ForgeError("prompts, completions, rewards and groups must have the same length")
        encode = lambda keep: self._encode([prompts[i] for i in keep], [completions[i] for i in keep])
        return self._update(len(prompts), encode, rewards, groups, demonstrations, lr)

    def step_tokens(
        self,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        rewards: Sequence[float],
        groups: Sequence[int],
        *,
        demonstrations: Sequence[tuple[str, str]] = (),
        lr: float | None = None,
    ) -> PolicyGradientStats:
        """One optimiser step on sampled token ids exactly as generation produced them (prompt ids rendered)."""
        if not (len(prompt_ids) == len(completion_ids) == len(rewards) == len(groups)):
            raise ForgeError("prompt ids, completion ids, rewards and groups must have the same length")
        encode = lambda keep: self._batch_from_ids([prompt_ids[i] for i in keep], [completion_ids[i] for i in keep])
        return self._update(len(prompt_ids), encode, rewards, groups, demonstrations, lr)

    def step_segments(
        self,
        prompts: Sequence[str],
        completions: Sequence[Sequence[Segment]],
        rewards: Sequence[float],
        groups: Sequence[int],
        *,
        lr: float | None = None,
    ) -> PolicyGradientStats:
        """One step on completions made of segments (`models.encode_segments`): the policy gradient and the KL
        cover what the model wrote, never what the runtime appended (tool responses)."""
        if not (len(prompts) == len(completions) == len(rewards) == len(groups)):
            raise ForgeError("prompts, completions, rewards and groups must have the same length")

        def encode(keep):
            batch = encode_segments(self.tokenizer, [prompts[i] for i in keep], [completions[i] for i in keep])
            return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

        return self._update(len(prompts), encode, rewards, groups, (), lr)

    def _batch_from_ids(self, prompt_ids, completion_ids) -> dict:
        rows = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad_id(self.tokenizer), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for i, (p, row) in enumerate(zip(prompt_ids, rows)):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
            labels[i, len(p) : len(row)] = input_ids[i, len(p) : len(row)]
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device),
                "labels": labels.to(self.device)}

    def _update(self, n, encode, rewards, groups, demonstrations, lr) -> PolicyGradientStats:
        if not n and not demonstrations:
            raise ForgeError("a policy-gradient step needs samples or demonstrations")
        # a fresh Adam's first steps move every weight by about lr whatever the gradient's size (the second
        # moment is estimated from one sample); on a small trained model that alone wrecks accuracy, so warm up
        warm = min(1.0, (self.steps_done + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        set_lr(self.optimizer, (self.lr if lr is None else lr) * warm)
        self.steps_done += 1
        self.model.train()
        advantages = group_advantages(rewards, groups, normalize_std=self.normalize_std)
        # samples with zero advantage carry no policy-gradient signal, only KL: skip them to save compute
        keep = [i for i in range(n) if abs(float(advantages[i])) > 1e-8]
        total = torch.zeros((), device=self.device)
        pg_value = kl_value = demo_value = 0.0
        if keep:
            loss, pg, kl = policy_gradient_loss(
                self.model, encode(keep), advantages[keep], ref_model=self.ref_model, kl_coef=self.kl_coef
            )
            total = total + loss
            pg_value, kl_value = float(pg.detach()), float(kl.detach())
        if demonstrations:
            demo_batch = self._encode([p for p, _ in demonstrations], [a for _, a in demonstrations])
            demo_loss = answer_cross_entropy(self.model, demo_batch)
            total = total + self.demo_coef * demo_loss
            demo_value = float(demo_loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
            if self.grad_filter is not None:
                self.grad_filter(self.model)
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.grad_clip)
            self.optimizer.step()
        self.model.eval()
        by_group: dict[int, float] = {}
        for g, r in zip(groups, rewards):
            by_group[g] = max(by_group.get(g, 0.0), float(r))
        return PolicyGradientStats(
            loss=float(total.detach()),
            pg_loss=pg_value,
            kl=kl_value,
            demo_loss=demo_value,
            mean_reward=sum(rewards) / max(1, len(rewards)),
            solved_groups=sum(1 for v in by_group.values() if v > 0) / max(1, len(by_group)),
            n_samples=n,
        )
