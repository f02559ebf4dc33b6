"""Config of stage 1.2 (Quiet-STaR): thought tokens, parallel thought training, its data, evaluation, thinking.

Names follow the paper (Zelikman et al. 2024); the authors' code calls `thought_length + 2` n_ahead (the
delimiters included), `n_true` n_ahead_talk and `n_thoughts` n_passes. Every knob is overridable, e.g.
`agent-forge run quietstar.thought_length=4 quietstar.train.steps=50`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import Section, UserPath
from .seed import TrainPhase


class QuietStarConfig(Section):
    """Stage 1.2: learnable thoughts after every token, trained with NLL + REINFORCE, used when answering."""

    # thoughts
    thought_length: int = Field(4, ge=1, description="sampled tokens per thought, between the two delimiters")
    n_thoughts: int = Field(2, ge=1, description="thoughts per position; the REINFORCE baseline is their mean")
    n_true: int = Field(3, ge=1, description="true tokens predicted (teacher-forced) after each thought")
    start_token: str = Field("<|startofthought|>", description="token added to the vocabulary that opens a thought")
    end_token: str = Field("<|endofthought|>", description="token added to the vocabulary that closes a thought")
    init_from: str = Field("---", description="text whose (mean) token embedding starts both delimiters")
    embedding_grad_weight: float = Field(100.0, gt=0, description="gradient weight on the delimiter embeddings")
    mixing_head_depth: int = Field(3, ge=1, description="linear layers in the mixing head MLP")
    # objective
    train_temperature: float = Field(1.0, ge=0, description="thought sampling temperature in training")
    base_nll_weight: float = Field(0.5, ge=0, le=1, description="share of the no-thought next-token NLL")
    reinforce_weight: float = Field(1.0, ge=0, description="weight of the REINFORCE term that rewards helpful thoughts")
    positive_rewards_only: bool = Field(
        True, description="reward only thoughts that beat their siblings' mean (negative advantages are clipped to 0)")
    anchor_kl: float = Field(
        1.0, ge=0,
        description="weight of KL(entering model || model) on the answer tokens' ordinary predictions: keeps "
                    "what the agent could do while thoughts are learned (0 turns it off)",
    )
    train: TrainPhase = Field(
        TrainPhase(steps=100, batch_size=16, lr=1e-4, warmup_steps=10), description="the thought-training run")
    # data: the task corpora's training split, plus text files
    domains: list[str] = Field(
        default_factory=lambda: ["arithmetic", "strings", "logic"], description="task domains of the training and evaluation data")
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], description="task levels of the training and evaluation data")
    worked_fraction: float = Field(
        0.1, ge=0, le=1, description="share of training examples written out with their worked steps"
    )
    text_files: list[UserPath] = Field(
        default_factory=list,
        description="extra UTF-8 text files to train on; relative paths are taken from the working directory")
    text_chunk_chars: int = Field(200, ge=16, description="text files are cut at whitespace into pieces of at most this many characters")
    # evaluation: Quiet-STaR vs the same steps of plain fine-tuning on the same data
    compare_without_thoughts: bool = Field(
        True, description="also fine-tune a copy for the same steps on the same data without thoughts (the control)")
    eval_items_per_level: int = Field(24, ge=1, description="validation and test tasks per domain and level")
    multistep_min_work: int = Field(2, ge=1, description="a test task counts as multi-step from this many steps")
    # thinking at inference
    think_stride: int = Field(1, ge=0, description="think before every k-th answer token; 0: before the first only")
    inference_temperature: float = Field(0.0, ge=0, description="thought sampling temperature when answering")
    max_new_tokens: int = Field(24, ge=1, description="longest answer generated in the evaluation")
    eval_batch_size: int = Field(64, ge=1, description="evaluation batch size")

    @model_validator(mode="after")
    def _distinct_tokens(self):
        if self.start_token == self.end_token:
            raise ValueError("quietstar.start_token and quietstar.end_token must differ")
        if not self.start_token or not self.end_token:
            raise ValueError("quietstar thought tokens must be non-empty strings")
        return self
