"""How sure the agent is: the self-model's confidence in a prompt, and the likelihood of a given answer.

* `predict_confidence(model, tokenizer, prompts)` (also `self_confidence`): the curriculum's self-model (it
  was taught to answer "sure? <prompt>" with "yes" when its greedy answer is right and "no" when it is wrong),
  read as P(yes) / (P(yes) + P(no)) from one teacher-forced pass. A prompt-level estimate, before any answer.
* `answer_likelihood(model, tokenizer, prompts, answers)`: the geometric-mean probability of an answer's
  tokens (terminator included) given the rendered prompt; an answer-level score to compare candidates.

The curriculum trains the first (`stages/curriculum/self_model.py`, which imports it from here: stages never
import each other), the experts stage's dispatch reads it to choose between the base weights, one expert and a
mixture, and the agent designs of the ADAS stage read both (self-refine's critique, abstain-and-retry,
self-consistency's tie-break).
Exercise: `pytest tests/inference/test_confidence.py`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..models import encode_pairs, token_logprobs

YES, NO = "yes", "no"


def confidence_prompt(prompt: str) -> str:
    return f"sure? {prompt}"


def _pair_logprobs(model, tokenizer, prompts: Sequence[str], answers: Sequence[str]) -> tuple[list[float], list[int]]:
    """Summed log-probability of each answer given its prompt, and the number of answer tokens scored."""
    device = next(model.parameters()).device
    batch = encode_pairs(tokenizer, list(prompts), list(answers))
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    targets = batch["labels"][:, 1:].to(device)
    mask = targets != -100
    logprobs = token_logprobs(logits[:, :-1], targets)
    return (logprobs * mask).sum(1).tolist(), mask.sum(1).tolist()


@torch.no_grad()
def predict_confidence(model, tokenizer, prompts: Sequence[str], batch_size: int = 64) -> list[float]:
    """The model's probability that its own answer to each prompt is right (from its yes/no likelihoods)."""
    out: list[float] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), batch_size):
        chunk = [confidence_prompt(p) for p in prompts[start : start + batch_size]]
        yes, _ = _pair_logprobs(model, tokenizer, chunk, [YES] * len(chunk))
        no, _ = _pair_logprobs(model, tokenizer, chunk, [NO] * len(chunk))
        out.extend(torch.sigmoid(torch.tensor(yes) - torch.tensor(no)).tolist())
    model.train(was_training)
    return out


self_confidence = predict_confidence  # the name the inference designs use


@torch.no_grad()
def answer_likelihood(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 64) -> list[float]:
    """Geometric-mean probability of each answer's tokens given its prompt, in (0, 1]."""
    if len(prompts) != len(answers):
        raise ValueError("answer_likelihood needs one answer per prompt")
    out: list[float] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(prompts), batch_size):
        totals, counts = _pair_logprobs(model, tokenizer, prompts[start : start + batch_size],
                                        answers[start : start + batch_size])
        out.extend(math.exp(total / max(count, 1)) for total, count in zip(totals, counts))
    model.train(was_training)
    return out
