"""Training one SVF expert with REINFORCE on verified rewards.

The policy is the entering model seen through one expert, held one of two ways (`application`):

* "weights" (option (a)): the chosen matrices are replaced, functionally, by W + U diag(S (z c - 1)) V^T
  (`torch.func.functional_call`); on a ternary model the BitLinear forward re-quantizes that matrix and the
  straight-through estimator carries the gradient;
* "correction" (option (b)): the layers keep their (ternary) weights and the same correction is added beside
  them in full precision (`corrected(..., trainable=True)`), as a packed layer serves it.

Either way gradients reach only the expert's logits. The shared `PolicyGradientTrainer` does the rest:
group-baseline advantages, KL to the entering model (the same module, used without the expert), gradient
clipping. Rollouts are sampled with the expert held in the model the same way (`held`), removed exactly
afterwards.

Exercise: `pytest tests/stages/experts`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ...models import completion_text, generate_token_ids, prompt_format
from ...models.formats.experts import Decomposition, corrected, expert_weights, held, z_of
from ...tasks import Task, verify
from ...training.policy_gradient import PolicyGradientTrainer


class SVFPolicy(torch.nn.Module):
    """The base model seen through one trainable expert (logits per matrix; z = max_mult * sigmoid), held as
    `application` says ("weights" or "correction")."""

    def __init__(self, model: torch.nn.Module, decomposition: dict[str, Decomposition], init: float, max_mult: float,
                 application: str = "weights"):
        super().__init__()
        self.base = model
        self.decomposition = decomposition
        self.application = application
        self.names = list(decomposition)
        self.max_mult = max_mult
        device = next(model.parameters()).device
        self.logits = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.full((decomposition[n].rank,), float(init), device=device)) for n in self.names])

    def z(self, detach: bool = False) -> dict[str, torch.Tensor]:
        return {n: z_of(p.detach() if detach else p, self.max_mult) for n, p in zip(self.names, self.logits)}

    def forward(self, **kwargs):
        if self.application == "correction":
            with corrected(self.base, self.decomposition, self.z(), trainable=True):
                return self.base(**kwargs)
        weights = expert_weights(self.base, self.decomposition, self.z())
        return torch.func.functional_call(self.base, weights, (), kwargs)


@dataclass
class ExpertLog:
    steps: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    best_step: int = 0
    best_val: float = 0.0


def train_expert(
    model, tokenizer, decomposition, train_tasks: Sequence[Task], *, steps: int, prompts_per_step: int,
    samples: int, temperature: float, max_new_tokens: int, lr: float, kl_coef: float, warmup_steps: int,
    normalize_std: bool, init: float, max_mult: float, val_every: int, validate: Callable[[dict], float],
    seed: int, log=None, application: str = "weights",
) -> tuple[dict[str, torch.Tensor], ExpertLog]:
    """(best z by validation, log). `validate(z)` returns the expert's validation accuracy (0-1); the initial
    expert (z constant, i.e. the entering weights) is the first candidate, so selection never does worse than
    the entering model on validation."""
    policy = SVFPolicy(model, decomposition, init, max_mult, application)
    trainer = PolicyGradientTrainer(
        policy, tokenizer, lr=lr, ref_model=model, kl_coef=kl_coef, normalize_std=normalize_std,
        warmup_steps=warmup_steps, params=list(policy.logits),
    )
    fmt = prompt_format(tokenizer)
    rng = random.Random(seed)
    pool = list(train_tasks)
    history = ExpertLog()
    best = policy.z(detach=True)
    history.best_val = validate(best)
    history.val.append({"step": 0, "accuracy": round(history.best_val, 4)})
    for step in range(1, steps + 1):
        tasks = [pool[rng.randrange(len(pool))] for _ in range(prompts_per_step)]
        prompt_ids = fmt.encode_prompts([t.prompt for t in tasks])
        with held(model, decomposition, policy.z(detach=True), application):
            generated = generate_token_ids(
                model, tokenizer, prompt_ids, max_new_tokens=max_new_tokens, temperature=temperature, n=samples,
                seed=seed * 1009 + step, fmt=fmt, progress=False,
            )
        groups = [i for i in range(len(tasks)) for _ in range(samples)]
        rewards = [verify(tasks[g], completion_text(tokenizer, ids, fmt)) for g, ids in zip(groups, generated)]
        stats = trainer.step_tokens([prompt_ids[g] for g in groups], generated, rewards, groups)
        history.steps.append({"step": step, "reward": round(stats.mean_reward, 4), "kl": round(stats.kl, 5),
                              "solved_groups": round(stats.solved_groups, 3)})
        if step % val_every == 0 or step == steps:
            z = policy.z(detach=True)
            acc = validate(z)
            history.val.append({"step": step, "accuracy": round(acc, 4)})
            if acc > history.best_val:
                best, history.best_val, history.best_step = z, acc, step
            if log is not None:
                log(f"step {step}: reward {stats.mean_reward:.3f} kl {stats.kl:.4f} val {acc:.3f} "
                    f"(best {history.best_val:.3f} at {history.best_step})")
    return {n: t.detach().cpu() for n, t in best.items()}, history
