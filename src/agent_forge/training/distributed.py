"""Running a training loop on several processes (DDP under `accelerate launch`) with gradient accumulation.

The contract: a loop's `next_batch(step)` returns the *global* batch of a step, the same in every process
(callers draw it from seeded generators, so it is). Each process takes a contiguous shard of that batch
(`shard`), splits its shard into `grad_accum` micro-batches, and weights each micro-batch's mean loss by its
share of the global batch's loss tokens (`loss_tokens`) times the number of processes, because DDP averages
gradients over processes. The step's gradient is then the gradient of the global batch's mean loss over its
answer tokens, what one process computes on the whole batch at once, up to float rounding (checked by
tests/training/test_ddp_equivalence.py with 2 CPU processes on gloo). Weighting by tokens rather than by
micro-batch matters: shards hold answers of different lengths, and averaging per-shard means would weigh a
token of a short-answer shard more than one of a long-answer shard.

Loss functions other than answer cross-entropy (anchored, distillation, thought objectives) are weighted the
same way; that is exact for losses that are means over the answer tokens and a close approximation otherwise.

`accelerator_for_launch()` gives the process's `Accelerator` when it was started by `accelerate launch` (or
torchrun) with more than one process, and None for a plain single process, whose loop stays exactly as it was.
Mixed precision comes from the launch (`accelerate launch --mixed_precision bf16`), as accelerate reads it.
"""

from __future__ import annotations

import os
from typing import Any, Sequence, TypeVar

import torch

T = TypeVar("T")

_shared: dict[str, Any] = {}


def launched_processes() -> int:
    """How many processes the launcher started (WORLD_SIZE, set by `accelerate launch` and torchrun), 1 if none."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerator_for_launch():
    """The process's `accelerate.Accelerator` under a multi-process launch, else None.

    One accelerator is shared by every loop of the process (accelerate keeps one process-group state anyway).
    """
    if launched_processes() <= 1:
        return None
    if "accelerator" not in _shared:
        from accelerate import Accelerator

        # accelerate treats a multi-process launch as CPU DDP (gloo) only when told to use the CPU; without a
        # GPU there is nothing else to use, and without this every process would silently train on its own
        _shared["accelerator"] = Accelerator(cpu=not torch.cuda.is_available())
    return _shared["accelerator"]


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """The `index`-th of `count` contiguous, near-equal parts of `items` (the first parts take the remainder)."""
    size, extra = divmod(len(items), count)
    start = index * size + min(index, extra)
    return list(items[start : start + size + (1 if index < extra else 0)])


def check_divisible(batch_size: int, processes: int, grad_accum: int) -> None:
    """Every process must run the same number of non-empty micro-batches (DDP synchronises each backward)."""
    if batch_size < processes * grad_accum:
        raise ValueError(f"a global batch of {batch_size} cannot give each of {processes} processes "
                         f"{grad_accum} non-empty micro-batches; use a larger batch or fewer accumulation steps")


def loss_tokens(batch: dict) -> int:
    """How many targets the batch's mean loss averages: labelled positions after the shift (answer tokens and
    terminators), or rows when the batch has no labels."""
    labels = batch.get("labels")
    if labels is None:
        return int(batch["input_ids"].shape[0])
    return int((labels[:, 1:] != -100).sum())


def all_reduce_sum(value: float, accelerator) -> float:
    """`value` summed over processes (itself without an accelerator)."""
    if accelerator is None or accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="sum")[0])
