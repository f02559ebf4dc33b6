"""The fast evaluation path: greedy exact match and answer log-likelihood from one forward pass.

Greedy decoding reproduces the reference iff, with the reference fed as the prefix, the argmax at every
answer position equals the reference token and the argmax after the answer is the terminator. So a single
teacher-forced pass over prompt + answer + terminator decides exact match for a whole batch, with no
sampling loop; the same logits give the mean log-probability of the reference tokens (a smooth fitness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..models import encode_pairs, token_logprobs
from ..tasks import Task


@dataclass
class TeacherForcedResult:
    """Per item: greedy exact match, and mean log-prob per reference token (answer + terminator)."""

    exact: list[bool]
    loglik: list[float]


def _batches_by_length(tasks: Sequence[Task], batch_size: int):
    # sorting by length keeps padding (wasted compute) small; results are put back in input order
    order = sorted(range(len(tasks)), key=lambda i: len(tasks[i].prompt) + len(tasks[i].answer))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def teacher_forced(model, tokenizer, tasks: Sequence[Task], batch_size: int = 64) -> TeacherForcedResult:
    """Score every task with one forward pass per batch."""
    device = next(model.parameters()).device
    exact: list[bool] = [False] * len(tasks)
    loglik: list[float] = [0.0] * len(tasks)
    was_training = model.training
    model.eval()
    for idx in _batches_by_length(tasks, batch_size):
        batch = encode_pairs(tokenizer, [tasks[i].prompt for i in idx], [tasks[i].answer for i in idx])
        input_ids = batch["input_ids"].to(device)
        logits = model(input_ids=input_ids, attention_mask=batch["attention_mask"].to(device)).logits[:, :-1]
        targets = batch["labels"][:, 1:].to(device)
        scored = targets != -100
        logprobs = token_logprobs(logits, targets)
        hits = (logits.argmax(-1) == targets) | ~scored
        counts = scored.sum(1).clamp(min=1)
        item_exact = hits.all(1).tolist()
        item_ll = ((logprobs * scored).sum(1) / counts).tolist()
        for j, i in enumerate(idx):
            exact[i] = bool(item_exact[j])
            loglik[i] = float(item_ll[j])
    model.train(was_training)
    return TeacherForcedResult(exact=exact, loglik=loglik)


def fast_exact_match(model, tokenizer, tasks: Sequence[Task], batch_size: int = 64) -> list[bool]:
    return teacher_forced(model, tokenizer, tasks, batch_size).exact


def answer_loglik(model, tokenizer, tasks: Sequence[Task], batch_size: int = 64) -> list[float]:
    return teacher_forced(model, tokenizer, tasks, batch_size).loglik
