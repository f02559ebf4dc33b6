"""Converting a trained model to ternary without destroying it: lambda warm-up plus distillation.

The student starts as a BitLinear copy of the full-precision model at quantization strength lambda = 0 (the
same function); lambda then ramps to 1 over the first ``warmup_fraction`` of the steps, so weights and
activations drift into their quantized values gradually instead of all at once (Hugging Face, "Fine-tuning
LLMs to 1.58bit", 2024). Meanwhile the student minimises KL to the frozen full-precision teacher's logits plus
the task cross-entropy, so what quantization breaks is trained back (BitNet's QAT: latent weights, STE).

Exercise: ``pytest tests/stages/bitnet/test_bitnet_qat.py``.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

from torch import nn

from ...errors import ForgeError
from ...training.distill import train_distill
from ...training.supervised import BatchFn, TrainLog
from ...models.formats.ternary import convert_to_bitlinear, set_quant_strength

# lambda as a function of progress through the warm-up, t in [0, 1]
WARMUP_SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": lambda t: t,
    "cosine": lambda t: 0.5 * (1 - math.cos(math.pi * t)),
    "step": lambda t: 1.0 if t >= 1.0 else 0.0,  # full precision, then ternary at once: the ablation
}


def quant_strength(step: int, steps: int, warmup_fraction: float, schedule: str = "linear") -> float:
    """Lambda at ``step`` (0-based) of ``steps``: 0 at the start, 1 from ``warmup_fraction * steps`` on."""
    if schedule not in WARMUP_SCHEDULES:
        raise ForgeError(f"unknown warm-up schedule {schedule!r}; known: {sorted(WARMUP_SCHEDULES)}")
    warm = round(warmup_fraction * steps)
    if warm <= 0:
        return 1.0
    return float(min(1.0, max(0.0, WARMUP_SCHEDULES[schedule](min(1.0, step / warm)))))


def naive_ternary(model: nn.Module, *, exclude, sub_norm: bool = False, norm_eps: float = 1e-6, act_bits: int = 8) -> nn.Module:
    """A ternary copy of ``model`` with no training at all: the baseline the warm-up has to beat."""
    student = copy.deepcopy(model)
    convert_to_bitlinear(student, exclude=exclude, sub_norm=sub_norm, norm_eps=norm_eps, act_bits=act_bits, strength=1.0)
    return student.eval()


def convert_with_distillation(
    teacher: nn.Module,
    tokenizer,
    next_batch: BatchFn,
    *,
    steps: int,
    lr: float,
    batch_warmup_steps: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    warmup_fraction: float = 0.3,
    warmup_schedule: str = "linear",
    kl_weight: float = 1.0,
    task_weight: float = 1.0,
    temperature: float = 1.0,
    kl_positions: str = "all",
    exclude=("lm_head",),
    sub_norm: bool = False,
    norm_eps: float = 1e-6,
    act_bits: int = 8,
    desc: str = "bitnet: warm-up + distillation",
    progress: bool = True,
) -> tuple[nn.Module, TrainLog, list[float]]:
    """(ternary student, training log, lambda per step); ``teacher`` is left unchanged and frozen.

    ``batch_warmup_steps`` is the learning-rate warm-up of the optimiser, not the quantization warm-up.
    """
    student = copy.deepcopy(teacher)
    convert_to_bitlinear(student, exclude=exclude, sub_norm=sub_norm, norm_eps=norm_eps, act_bits=act_bits, strength=0.0)
    for p in student.parameters():
        p.requires_grad_(True)
    lambdas: list[float] = []

    def on_step(step: int) -> None:
        lam = quant_strength(step, steps, warmup_fraction, warmup_schedule)
        set_quant_strength(student, lam)
        lambdas.append(lam)

    log = train_distill(
        student, teacher, tokenizer, next_batch, steps=steps, lr=lr, warmup_steps=batch_warmup_steps,
        weight_decay=weight_decay, grad_clip=grad_clip, kl_weight=kl_weight, task_weight=task_weight,
        temperature=temperature, positions=kl_positions, on_step=on_step, desc=desc, progress=progress,
    )
    set_quant_strength(student, 1.0)
    return student.eval(), log, lambdas
