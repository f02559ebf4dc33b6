"""Dispatch mode (1): the agent classifies a prompt itself, by answering "domain of: <prompt>" with a class name.

The agent is taught this answer by one more SVF vector (`z`, the same kind as an expert: a few thousand
singular-value scales) that is held in the weights only while it classifies, so every other answer is given
by exactly the weights it had before: no skill can be lost, where tuning the weights themselves would need a
KL or replay guard. Its answer is read as a distribution over the known classes: each class name (and the
terminator) is scored by its summed log-likelihood after the classification prompt in one teacher-forced
pass, plus a per-class bias, and a softmax over those scores gives the class probabilities. The bias starts
as contextual calibration (Zhao et al. 2021: minus each class's score after an empty prompt) because most of a
class name's likelihood does not depend on the prompt at all (a longer name is less likely everywhere); the
vector only has to learn the part that does. The answer is thereby always one of the
classes (a free-running answer of a small model may be no class at all), and the probabilities are what a
mixture of experts and the confidence thresholds use, like the hidden-state router's (mode 2).

The stage trains `z` with cross-entropy over the classes (`stages/experts/self_classify.py`); the dispatch
hook (`store.ExpertSet`) calls `class_probabilities` with `z` applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

TEMPLATE = "domain of: {prompt}"
ROOM = 64  # tokens kept free for the template, the chat format and the longest class name


def fit_prompt(tokenizer, prompt: str, limit: int) -> str:
    """The prompt, cut to its last `limit - ROOM` tokens when longer (a prompt past the model's context would
    only lose its beginning's positions; the end says most about the task). An empty prompt stays empty."""
    keep = max(8, limit - ROOM)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) <= keep:
        return prompt
    return tokenizer.decode(ids[-keep:], skip_special_tokens=True)


def label_scores(model, tokenizer, prompts: Sequence[str], classes: Sequence[str], template: str = TEMPLATE,
                 limit: int | None = None) -> torch.Tensor:
    """[prompts, classes]: summed log-likelihood of each class name (terminator included) as the answer to the
    classification prompt. Differentiable when grad is enabled (the training of `z` goes through it)."""
    from ...prompting import encode_pairs
    from ...logprobs import token_logprobs

    if not prompts:
        return torch.zeros(0, len(classes))
    limit = limit or getattr(getattr(model, "config", None), "max_position_embeddings", 4096) or 4096
    asked = [template.format(prompt=fit_prompt(tokenizer, p, limit)) for p in prompts]
    rows = [q for q in asked for _ in classes]
    answers = [c for _ in asked for c in classes]
    device = next(model.parameters()).device
    batch = encode_pairs(tokenizer, rows, answers)
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    targets = batch["labels"][:, 1:].to(device)
    mask = targets != -100
    scores = (token_logprobs(logits[:, :-1].float(), targets) * mask).sum(1)
    return scores.view(len(prompts), len(classes))


@dataclass
class SelfClassifier:
    """The classes, the classification vector z (per matrix; applied only while classifying), the per-class
    bias added to the class scores, and the prompt."""

    classes: list[str]
    z: dict[str, torch.Tensor]
    bias: torch.Tensor  # [classes]
    template: str = TEMPLATE

    @torch.no_grad()
    def probabilities(self, model, tokenizer, prompts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """[prompts, classes] class probabilities, computed with whatever weights the model holds now (the
        caller applies `z`)."""
        was_training = model.training
        model.eval()
        parts = [torch.softmax(label_scores(model, tokenizer, prompts[s : s + batch_size], self.classes,
                                            self.template).cpu() + self.bias, dim=-1)
                 for s in range(0, len(prompts), batch_size)]
        model.train(was_training)
        return torch.cat(parts) if parts else torch.zeros(0, len(self.classes))


@torch.no_grad()
def calibration_bias(model, tokenizer, classes: Sequence[str], template: str = TEMPLATE) -> torch.Tensor:
    """Minus each class's score after the empty prompt: the classes start equally likely there."""
    was_training = model.training
    model.eval()
    bias = -label_scores(model, tokenizer, [""], classes, template)[0].cpu()
    model.train(was_training)
    return bias
