"""Config of stage 0 (seed): build the tiny shared base and three specialists, or validate external models."""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Section, UserPath


class TinyModelConfig(Section):
    """Shape of the built-in tiny Llama used by the tiny profile."""

    hidden_size: int = Field(128, ge=8, description="width of the residual stream (embedding size)")
    intermediate_size: int = Field(384, ge=8, description="width of each MLP's hidden layer")
    num_hidden_layers: int = Field(4, ge=1, description="transformer blocks")
    num_attention_heads: int = Field(4, ge=1, description="query heads per attention layer")
    num_key_value_heads: int = Field(4, ge=1, description="key/value heads (fewer than the query heads: grouped-query attention)")
    max_position_embeddings: int = Field(256, ge=16, description="longest sequence in tokens (prompt plus answer)")


class TrainPhase(Section):
    """One supervised training phase (pretraining, a specialist fine-tune, Quiet-STaR or BitNet training)."""

    steps: int = Field(description="optimizer steps; at least 1 (leave a stage out of `stages` to skip it)")
    batch_size: int = Field(64, ge=1, description="examples per step")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW), reached after the warm-up")
    warmup_steps: int = Field(20, ge=0, description="steps of linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")

    @field_validator("steps")
    @classmethod
    def _trains_something(cls, steps: int) -> int:
        if steps < 1:
            raise ValueError(
                f"a training phase needs at least 1 step, got {steps}: 0 steps would train nothing and still report "
                "the stage done (to skip a stage, leave it out of `stages`)"
            )
        return steps


class SeedConfig(Section):
    """Stage 0. `profile: tiny` builds models; `profile: external` validates three given models; `profile:
    finetune` makes three specialists from one `base` model by LoRA fine-tunes."""

    profile: Literal["tiny", "external", "finetune"] = Field(
        "tiny", description="tiny: build a small base and three specialists; external: use the three models in `models`; "
                            "finetune: LoRA-fine-tune one specialist per name in `specialists` from the model in `base`")
    models: dict[str, UserPath] = Field(
        default_factory=dict,
        description="external profile: three model sources (HF folders or .gguf files) keyed by specialist name; "
                    "relative paths are taken from the working directory")
    base: UserPath | None = Field(
        None, description="external profile, optional: the three models' common ancestor (task vectors are taken against "
                          "it); finetune profile, required: the model (HF folder or .gguf file) the specialists are made from")
    data: dict[str, UserPath] = Field(
        default_factory=dict,
        description="finetune profile, optional: a JSONL file of {\"prompt\", \"answer\"} lines per specialist name; a "
                    "specialist without one trains on its task domain of the suites")
    tiny: TinyModelConfig = Field(TinyModelConfig(), description="tiny profile: the model's shape")
    specialists: list[str] = Field(
        default_factory=lambda: ["arithmetic", "strings", "logic"],
        description="tiny and finetune profiles: one specialist is fine-tuned per name here (a task domain, or for the "
                    "finetune profile a key of `data`)")
    pretrain_levels: list[int] = Field(
        default_factory=lambda: [1, 2], description="task levels of every domain the shared base is pretrained on")
    specialist_levels: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4], description="task levels of its own domain each specialist is fine-tuned on")
    pretrain: TrainPhase = Field(TrainPhase(steps=900, lr=1e-3), description="pretraining of the shared base")
    finetune: TrainPhase = Field(
        TrainPhase(steps=350, lr=2e-3), description="each specialist's fine-tune (lr is the adapters' when finetune_method is lora)")
    finetune_method: Literal["lora", "full"] = Field(
        "lora", description="lora: LoRA adapters folded back into the weights; full: every weight is fine-tuned")
    lora_rank: int = Field(8, ge=1, description="rank of the LoRA adapters")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / rank)")
    anchor_items: int = Field(
        16, ge=0, description="rows of each specialist batch that are other domains' tasks, on which the specialist is "
                              "pulled toward the base by KL (disentanglement anchor)")
    anchor_weight: float = Field(1.0, ge=0, description="weight of the anchor's KL term; 0 turns the anchor off")
    replay_fraction: float = Field(
        0.2, ge=0, le=1, description="share of each specialist batch replayed from the pretraining mixture")
    statement_fraction: float = Field(
        0.2, ge=0, lt=1, description="share of each pretraining batch that is plain fact statements about the generated world")
    eval_levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], description="task levels of the seed and evomerge test tables")
    eval_items_per_level: int = Field(50, ge=1, description="test tasks per domain and level in those tables")

    @model_validator(mode="after")
    def _check_profile(self):
        if self.profile == "finetune":
            if self.base is None:
                raise ValueError("seed.base must name the model the finetune profile fine-tunes (HF folder or .gguf file)")
            if len(self.specialists) != 3 or len(set(self.specialists)) != 3:
                raise ValueError(f"seed.specialists must name three different specialists, got {self.specialists}")
            unused = sorted(set(self.data) - set(self.specialists))
            if unused:
                raise ValueError(f"seed.data names {unused}, which are not in seed.specialists {self.specialists}")
        if self.profile in ("tiny", "finetune") and self.anchor_weight > 0 and self.anchor_items >= self.finetune.batch_size:
            raise ValueError(f"seed.anchor_items ({self.anchor_items}) must be smaller than finetune.batch_size "
                             f"({self.finetune.batch_size})")
        if self.profile == "external" and len(self.models) != 3:
            raise ValueError(f"seed.models must name exactly three models for the external profile, got {len(self.models)}")
        return self
