"""Knowledge distillation on logits: a student learns to match a frozen teacher (plus, optionally, the task).

Loss = ``kl_weight * T^2 * KL(teacher_T || student_T) + task_weight * answer cross-entropy``, where ``_T`` are
softmaxes at temperature ``T`` (Hinton et al. 2015; the ``T^2`` keeps gradient size independent of ``T``).
The KL is averaged over the positions that predict a real token (``positions="all"``) or only over the answer
and terminator (``positions="answer"``). The loop is ``train_supervised`` with this loss, so schedules,
clipping, determinism and progress bars are the shared ones; ``on_step(step)`` runs before each step (BitNet
uses it for its quantization warm-up, a pruning stage could use it for its sparsity schedule).

Used by BitNet (recover accuracy after ternary conversion) and by any stage that compresses or bakes a model
against a reference. Exercise: ``pytest tests/training/test_distill.py``.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from torch.nn import functional as F

from .supervised import BatchFn, LossFn, TrainLog, train_supervised

Positions = Literal["all", "answer"]


def kl_to_teacher(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over masked positions of ``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` (fp32)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} vs teacher {tuple(teacher_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_position = (t.exp() * (t - s)).sum(dim=-1)
    if mask is None:
        return per_position.mean() * temperature**2
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1.0) * temperature**2


def prediction_mask(batch: dict, positions: Positions) -> torch.Tensor:
    """Which logits (position t predicts token t+1) the KL covers: [batch, length-1] booleans."""
    if positions == "answer":
        return batch["labels"][:, 1:] != -100
    if positions == "all":
        return batch["attention_mask"][:, 1:].bool()
    raise ValueError(f"positions must be 'all' or 'answer', got {positions!r}")


def distill_loss(
    teacher: torch.nn.Module,
    *,
    kl_weight: float = 1.0,
    task_weight: float = 0.0,
    temperature: float = 1.0,
    positions: Positions = "all",
) -> LossFn:
    """A ``loss_fn(student, batch)`` for ``train_supervised``: KL to the frozen teacher plus task CE."""
    if kl_weight < 0 or task_weight < 0 or kl_weight + task_weight == 0:
        raise ValueError("distillation needs non-negative weights, not both zero")

    def loss_fn(student: torch.nn.Module, batch: dict) -> torch.Tensor:
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        loss = logits.new_zeros((), dtype=torch.float32)
        if kl_weight:
            with torch.no_grad():
                teacher_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            loss = loss + kl_weight * kl_to_teacher(logits, teacher_logits, prediction_mask(batch, positions), temperature)
        if task_weight:
            labels = batch["labels"][:, 1:]
            loss = loss + task_weight * F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100
            )
        return loss

    return loss_fn


def train_distill(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    tokenizer,
    next_batch: BatchFn,
    *,
    steps: int,
    lr: float,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    kl_weight: float = 1.0,
    task_weight: float = 0.0,
    temperature: float = 1.0,
    positions: Positions = "all",
    on_step: Callable[[int], None] | None = None,
    params: Sequence[torch.nn.Parameter] | None = None,
    desc: str = "distill",
    progress: bool = True,
) -> TrainLog:
    """Train ``student`` towards the frozen ``teacher`` on the (prompt, answer) pairs ``next_batch(step)`` gives."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def batches(step: int):
        if on_step is not None:
            on_step(step)
        return next_batch(step)

    return train_supervised(
        student, tokenizer, batches, steps=steps, lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay,
        grad_clip=grad_clip, params=params, desc=desc, progress=progress,
        loss_fn=distill_loss(teacher, kl_weight=kl_weight, task_weight=task_weight, temperature=temperature,
                             positions=positions),
    )
