"""Supervised fine-tuning on (prompt, answer) pairs with the loss on answer tokens only.

Used by the seed stage (pretraining and specialist fine-tunes), Quiet-STaR's no-thought control, BitNet's
task loss, replay in the curriculum and prompt baking.

Scale-out: under `accelerate launch` with several processes (or given an `accelerator`), each step's global
batch is sharded over the processes and trained as DDP; `grad_accum` splits each process's part into
micro-batches. Either way the step follows the global batch's mean loss (see `distributed.py`). A plain single
process with `grad_accum=1` runs the original loop unchanged. Exercise:
`pytest tests/training/test_ddp_equivalence.py`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..models import encode_pairs
from ..utils.progress import progress as progress_bar
from .distributed import accelerator_for_launch, all_reduce_sum, check_divisible, loss_tokens, shard
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
    grad_accum: int = 1,
    accelerator: Any = None,
) -> TrainLog:
    """Run `steps` optimiser steps; `next_batch(step)` supplies the pairs so callers control data mixing.

    `grad_filter` runs between backward and the optimiser step (e.g. Grokfast's gradient filter).
    `params` restricts training to a subset (e.g. LoRA or SVF vectors); default is every parameter.
    `encode(items)` turns what `next_batch` returns into a batch (default: `encode_pairs` of (prompt, answer)
    pairs; `models.encode_segments` for answers with tool responses the loss must skip).
    `grad_accum` splits each process's part of the batch into that many micro-batches (one optimiser step).
    `accelerator` (an `accelerate.Accelerator`) trains through it; by default one is made only under a
    multi-process launch. `log.losses` holds the global batch's loss in every process.
    """
    import time

    if grad_accum < 1:
        raise ValueError(f"grad_accum must be at least 1, got {grad_accum}")
    accelerator = accelerator if accelerator is not None else accelerator_for_launch()
    optimizer = make_optimizer(params if params is not None else model.parameters(), lr, weight_decay)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    # the module the loss runs through: DDP's wrapper when distributed (its backward hooks sync gradients)
    runner = model
    if accelerator is not None:
        runner, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device

    def encode_items(items) -> dict:
        batch = (encode(items) if encode is not None
                 else encode_pairs(tokenizer, [p for p, _ in items], [a for _, a in items]))
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    log = TrainLog()
    model.train()
    start = time.perf_counter()
    steps_iter = range(steps)
    show = progress and (accelerator is None or accelerator.is_main_process)
    bar = progress_bar(steps_iter, desc=desc) if show else None
    for step in bar if bar is not None else steps_iter:
        set_lr(optimizer, lr * warmup_cosine(step, steps, warmup_steps))
        pairs = next_batch(step)
        optimizer.zero_grad(set_to_none=True)
        if accelerator is None and grad_accum == 1:
            # the original single-process step, kept as it was so that its numbers do not move
            loss = loss_fn(model, encode_items(pairs))
            loss.backward()
            step_loss = float(loss.detach())
        else:
            step_loss = _sharded_backward(runner, pairs, encode_items, loss_fn, grad_accum, accelerator)
        if grad_filter is not None:
            grad_filter(model)
        if grad_clip:
            if accelerator is not None:  # unscales fp16 gradients first, and knows FSDP's sharded parameters
                accelerator.clip_grad_norm_(trainable, grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
        optimizer.step()
        log.losses.append(step_loss)
        if bar is not None and step % 10 == 0:
            bar.set_postfix(loss=f"{log.tail_mean(10):.3f}")
    if accelerator is not None:
        # drops the mixed-precision forward wrapper accelerate put on the model; the caller keeps `model`
        accelerator.unwrap_model(runner, keep_fp32_wrapper=False)
    model.eval()
    log.seconds = time.perf_counter() - start
    return log


def _sharded_backward(runner: torch.nn.Module, pairs: Sequence, encode_items: Callable[[Sequence], dict],
                      loss_fn: LossFn, grad_accum: int, accelerator: Any) -> float:
    """Accumulate this process's share of the global batch's gradient; return the global batch's mean loss.

    Each micro-batch's mean loss is weighted by its share of the global batch's loss tokens, times the number
    of processes because DDP averages gradients over them, so the summed gradient is that of the global mean.
    """
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    check_divisible(len(pairs), world, grad_accum)
    mine = shard(pairs, rank, world)
    micro = [encode_items(shard(mine, i, grad_accum)) for i in range(grad_accum)]
    counts = [loss_tokens(batch) for batch in micro]
    total = all_reduce_sum(float(sum(counts)), accelerator)
    step_loss = 0.0
    for i, (batch, count) in enumerate(zip(micro, counts)):
        last = i == len(micro) - 1
        # gradients are all-reduced once per step, on the last micro-batch, not after every backward
        quiet = accelerator.no_sync(runner) if accelerator is not None and not last else nullcontext()
        with quiet:
            loss = loss_fn(runner, batch)
            scaled = loss * (count / total * world)
            if accelerator is not None:
                accelerator.backward(scaled)
            else:
                scaled.backward()
        step_loss += float(loss.detach()) * count / total
    return all_reduce_sum(step_loss, accelerator)
