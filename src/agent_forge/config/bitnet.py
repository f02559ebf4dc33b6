"""Config of stage 1.3 (BitNet b1.58): which layers go ternary, the warm-up + distillation run, evaluation, export.

Quantization follows Ma et al. 2024 (absmean ternary weights, per-token absmax int8 activations, STE); the
warm-up lambda that blends full-precision and quantized values follows Hugging Face's "Fine-tuning LLMs to
1.58bit" recipe. Every knob is overridable, e.g. `agent-forge run bitnet.train.steps=100 bitnet.sub_norm=true`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section
from .seed import TrainPhase


class BitNetConfig(Section):
    """Stage 1.3: convert to BitLinear, recover accuracy by distillation, export 2-bit packed weights."""

    input_key: str = Field("model", description="which model of the previous stage to convert")
    # conversion
    exclude: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        description="fnmatch patterns on module names (full name or last component) kept in full precision",
    )
    sub_norm: bool = Field(False, description="RMSNorm on each BitLinear's input before quantization (BitNet's SubLN)")
    norm_eps: float = Field(1e-6, gt=0, description="epsilon of the sub_norm RMSNorm")
    act_bits: int = Field(8, ge=2, le=8, description="activation bits; the packed export requires 8")
    # quantization-aware training: lambda warm-up + KL distillation from the full-precision model
    train: TrainPhase = Field(
        TrainPhase(steps=500, batch_size=32, lr=2e-3, warmup_steps=10),
        description="the quantization-aware training run (lambda warm-up, then distillation)")
    warmup_fraction: float = Field(0.3, ge=0, le=1, description="share of steps over which lambda ramps 0 -> 1")
    warmup_schedule: Literal["linear", "cosine", "step"] = Field(
        "linear", description="shape of the lambda ramp from full precision (0) to fully quantized (1)")
    kl_weight: float = Field(1.0, ge=0, description="weight of the KL distillation term from the full-precision teacher")
    task_weight: float = Field(1.0, ge=0, description="weight of the answer cross-entropy (the task loss)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the distillation")
    kl_positions: Literal["all", "answer"] = Field(
        "all", description="where the KL is taken: every token position, or the answer tokens only")
    grad_clip: float = Field(1.0, ge=0, description="gradient-norm clip; 0 turns clipping off")
    # data and evaluation
    domains: list[str] = Field(
        default_factory=lambda: ["arithmetic", "strings", "logic"], description="task domains of the training and evaluation data")
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], description="task levels of the training and evaluation data")
    eval_items_per_level: int = Field(50, ge=1, description="test tasks per domain and level in the stage's table")
    eval_batch_size: int = Field(64, ge=1, description="evaluation batch size")
    evaluate_naive: bool = Field(True, description="also measure the naive (no warm-up, no distillation) conversion")
    # export
    export_packed: bool = Field(True, description="write the 2-bit packed export (transformers bitnet layout)")
