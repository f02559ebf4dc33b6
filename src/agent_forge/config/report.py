"""Config of the agent's trajectory: what the runner measures on the model each stage receives and leaves.

After every stage the runner scores the stage's outputs on the full task suite (every domain, levels 1-10,
test split, the fast teacher-forced path), and records their size on disk and answer decode speed (and, with
`general_text`, perplexity on general English text), in `NN-<stage>/trajectory.json`; `agent-forge report RUN`
reads them.
"""

from __future__ import annotations

from pydantic import Field

from .base import Section


class ReportConfig(Section):
    """The suite the trajectory is measured on, and the regression rule."""

    trajectory: bool = Field(True, description="measure every stage's entering and leaving model")
    levels: list[int] = Field(default_factory=lambda: list(range(1, 11)), description="suite levels")
    items_per_level: int = Field(20, ge=1, description="test tasks per domain and level")
    batch_size: int = Field(64, ge=1, description="evaluation batch size")
    speed_prompts: int = Field(8, ge=1, description="prompts answered (one batch) to measure decode speed")
    speed_tokens: int = Field(24, ge=1, description="new tokens per prompt in the speed measurement")
    general_text: bool = Field(
        False, description="also measure perplexity on general English text (stdlib docstrings; "
        "evaluation.general_text); meaningless for the tiny profile's character-level models"
    )
    general_text_tokens: int = Field(4096, ge=2, description="tokens of general text scored (the first ones)")
    general_text_window: int = Field(512, ge=2, description="context window (tokens) the general text is cut into")
    max_undeclared_drop: float = Field(
        2.0, ge=0, description="points of suite accuracy a stage may lose without declaring a trade-off"
    )
