"""Config of stage 0 (seed): build the tiny shared base and three specialists, or validate external models."""

from typing import Literal

from pydantic import Field, model_validator

from .base import Section


class TinyModelConfig(Section):
    """Shape of the built-in tiny Llama used by the tiny profile."""

    hidden_size: int = Field(128, ge=8)
    intermediate_size: int = Field(384, ge=8)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(4, ge=1)
    max_position_embeddings: int = Field(256, ge=16)


class TrainPhase(Section):
    """One supervised training phase (pretraining or a specialist fine-tune)."""

    steps: int = Field(ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)


class SeedConfig(Section):
    """Stage 0. `profile: tiny` builds models; `profile: external` validates three given models."""

    profile: Literal["tiny", "external"] = "tiny"
    # external profile: three model sources (HF folders or .gguf files), keyed by specialist name
    models: dict[str, str] = Field(default_factory=dict)
    # external profile, optional: the common ancestor of the three (task vectors are taken against it)
    base: str | None = None
    # tiny profile
    tiny: TinyModelConfig = TinyModelConfig()
    specialists: list[str] = Field(default_factory=lambda: ["arithmetic", "strings", "logic"])
    pretrain_levels: list[int] = Field(default_factory=lambda: [1, 2])
    specialist_levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4])
    pretrain: TrainPhase = TrainPhase(steps=900, lr=1e-3)
    # specialists: LoRA adapters (folded back into the weights) or full fine-tunes; lr is the finetune phase's
    finetune: TrainPhase = TrainPhase(steps=350, lr=2e-3)
    finetune_method: Literal["lora", "full"] = "lora"
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    # disentanglement anchor: of each specialist batch, `anchor_items` rows are other domains' tasks on which
    # the specialist is pulled toward the base by KL (weight `anchor_weight`; 0 turns it off)
    anchor_items: int = Field(16, ge=0)
    anchor_weight: float = Field(1.0, ge=0)
    replay_fraction: float = Field(0.2, ge=0, le=1)
    # share of each pretraining batch that is plain fact statements about the generated world (facts domain)
    statement_fraction: float = Field(0.2, ge=0, lt=1)
    eval_levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4])
    eval_items_per_level: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _check_profile(self):
        if self.profile == "tiny" and self.anchor_weight > 0 and self.anchor_items >= self.finetune.batch_size:
            raise ValueError(f"seed.anchor_items ({self.anchor_items}) must be smaller than finetune.batch_size "
                             f"({self.finetune.batch_size})")
        if self.profile == "external" and len(self.models) != 3:
            raise ValueError(f"seed.models must name exactly three models for the external profile, got {len(self.models)}")
        return self
