"""Supervised fine-tuning on (prompt, answer) pairs with the loss on answer tokens only.

Used by the seed stage (pretraining and specialist fine-tunes), Quiet-STaR's no-thought control, BitNet's
task loss, replay in the curriculum and prompt baking. Exercise: `pytest tests/training/test_supervised.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..models import encode_pairs
from ..utils.progress import progress as progress_bar
from .optim import make_optimizer, set_lr, warmup_cosine

Pair = tuple[str, str]
BatchFn = Callable[[int], Sequence[Pair]]
# loss_fn(model, encoded_batch) -> scalar loss; the default is answer-token cross-entropy
LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


@dataclass
class TrainLog:
    """Loss per step and the wall time of the loop."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def tail_mean(self, k: int = 20) -> float:
        tail = self.losses[-k:]
        return sum(tail) / max(1, len(tail))


def answer_cross_entropy(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100 (answer + terminator)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return answer_cross_entropy_of(logits, batch["labels"])


def answer_cross_entropy_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`answer_cross_entropy` from logits already computed (for losses that add terms on the same logits)."""
    # shift so that position t predicts token t+1
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def train_supervised(
    model: torch.nn.Module,
    tokenizer,
    next_batch: BatchFn,
    *,
    steps: int,
    lr: float,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    loss_fn: LossFn = answer_cross_entropy,
    grad_filter: Callable[[torch.nn.Module], None] | None = None,
    params: Sequence[torch.nn.Parameter] | None = None,
    desc: str = "train",
    progress: bool = True,
    encode: Callable[[Sequence], dict] | None = None,
) -> TrainLog:
    """Run `steps` optimiser steps; `next_batch(step)` supplies the pairs so callers control data mixing.

    `grad_filter` runs between backward and the optimiser step (e.g. Grokfast's gradient filter).
    `params` restricts training to a subset (e.g. LoRA or SVF vectors); default is every parameter.
    `encode(items)` turns what `next_batch` returns into a batch (default: `encode_pairs` of (prompt, answer)
    pairs; `models.encode_segments` for answers with tool responses the loss must skip).
    """
    import time

    device = next(model.parameters()).device
    optimizer = make_optimizer(params if params is not None else model.parameters(), lr, weight_decay)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    log = TrainLog()
    model.train()
    start = time.perf_counter()
    steps_iter = range(steps)
    bar = progress_bar(steps_iter, desc=desc) if progress else None
    for step in bar if bar is not None else steps_iter:
        set_lr(optimizer, lr * warmup_cosine(step, steps, warmup_steps))
        pairs = next_batch(step)
        batch = (encode(pairs) if encode is not None
                 else encode_pairs(tokenizer, [p for p, _ in pairs], [a for _, a in pairs]))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_filter is not None:
            grad_filter(model)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
        optimizer.step()
        log.losses.append(float(loss.detach()))
        if bar is not None and step % 10 == 0:
            bar.set_postfix(loss=f"{log.tail_mean(10):.3f}")
    model.eval()
    log.seconds = time.perf_counter() - start
    return log
