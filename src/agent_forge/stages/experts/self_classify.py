"""Teaching the agent to classify a prompt itself (dispatch mode 1): "domain of: <prompt>" -> "<domain>".

Supervised and brief: the only trainable numbers are one SVF vector (the singular-value scales of the expert
matrices, `SVFPolicy` of `training`), held only while the agent classifies, so the agent's
other answers keep exactly the entering weights (the strongest guard against losing skills). The loss is the
cross-entropy of the class-name likelihoods (`models.formats.experts.label_scores`) plus a per-class bias
(starting at contextual calibration, trained with the vector) against the prompt's domain, on train-split
prompts; the vector with the best validation routing accuracy is kept (the initial
one, which is the entering weights, included).

Exercise: `pytest tests/stages/experts/test_self_classify.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ...models.formats.experts import SelfClassifier, held, label_scores
from ...models.formats.experts.classify import calibration_bias
from .training import SVFPolicy


@dataclass
class ClassifierLog:
    steps: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    best_step: int = 0
    best_val: float = 0.0


def routing_accuracy(model, tokenizer, decomposition, classifier: SelfClassifier, prompts: Sequence[str],
                     labels: Sequence[int], application: str = "weights") -> float:
    """Share (0-1) of prompts whose most probable class is their own, with the classifier's vector held."""
    if not prompts:
        return 0.0
    with held(model, decomposition, classifier.z, application):
        probs = classifier.probabilities(model, tokenizer, list(prompts))
    return float((probs.argmax(-1) == torch.tensor(list(labels))).float().mean())


def train_classifier(model, tokenizer, decomposition, classes: Sequence[str], prompts: Sequence[str],
                     labels: Sequence[int], val_prompts: Sequence[str], val_labels: Sequence[int], *, steps: int,
                     batch: int, lr: float, init: float, max_mult: float, val_every: int, seed: int,
                     log=None, application: str = "weights") -> tuple[SelfClassifier, ClassifierLog]:
    """(the classifier with the best validation accuracy, its log)."""
    classes = list(classes)
    policy = SVFPolicy(model, decomposition, init, max_mult, application)
    bias = torch.nn.Parameter(calibration_bias(model, tokenizer, classes))
    opt = torch.optim.Adam([*policy.logits, bias], lr=lr)
    rng = random.Random(seed)
    order = list(range(len(prompts)))
    history = ClassifierLog()

    def candidate() -> SelfClassifier:
        return SelfClassifier(classes, {n: t.detach().cpu() for n, t in policy.z(detach=True).items()},
                              bias.detach().clone())

    best = candidate()
    history.best_val = routing_accuracy(model, tokenizer, decomposition, best, val_prompts, val_labels, application)
    history.val.append({"step": 0, "accuracy": round(history.best_val, 4)})
    for step in range(1, steps + 1):
        picked = [order[rng.randrange(len(order))] for _ in range(batch)]
        scores = label_scores(policy, tokenizer, [prompts[i] for i in picked], classes) + bias
        loss = torch.nn.functional.cross_entropy(scores, torch.tensor([labels[i] for i in picked]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.steps.append({"step": step, "loss": round(float(loss.detach()), 4)})
        if step % val_every == 0 or step == steps:
            found = candidate()
            acc = routing_accuracy(model, tokenizer, decomposition, found, val_prompts, val_labels, application)
            history.val.append({"step": step, "accuracy": round(acc, 4)})
            if acc > history.best_val:
                best, history.best_val, history.best_step = found, acc, step
            if log is not None:
                log(f"step {step}: loss {float(loss.detach()):.3f} val routing {acc:.3f} "
                    f"(best {history.best_val:.3f} at {history.best_step})")
            if history.best_val >= 1.0:
                break  # every validation prompt routed right: more steps cannot be selected
    return best, history
