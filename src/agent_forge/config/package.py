"""Config of the last stage (package): the final compression pass and the deployable bundle.

Every knob of `agent_forge.stages.package` lives here; `agent-forge run package.int8_embeddings=off` overrides one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Section


class PackageConfig(Section):
    """Last stage: one deployable bundle (packed 2-bit linears + every extension), measured and hashed."""

    input_key: str = Field("model", description="which output of the previous stage is bundled")
    int8_embeddings: Literal["auto", "always", "measure", "off"] = Field(
        "auto",
        description="int8 (per-row absmax) embeddings / LM head of a packed bundle: auto = measure, apply only when "
                    "no validation item changes; always = measure and apply; measure = measure only; off = neither")
    domains: list[str] = Field(
        default_factory=lambda: ["arithmetic", "strings", "logic", "facts"],
        description="domains of the suite the bundle is measured on (fast path)")
    levels: list[int] = Field(
        default_factory=lambda: list(range(1, 11)), description="task levels of that suite")
    val_items_per_level: int = Field(
        10, ge=1, description="validation items per domain and level (decides the int8 pass)")
    test_items_per_level: int = Field(
        10, ge=1, description="test items per domain and level (the evaluation recorded in bundle.json)")
    eval_batch_size: int = Field(64, ge=1, description="batch size of the teacher-forced evaluation")

    @model_validator(mode="after")
    def _checks(self):
        if not self.domains:
            raise ValueError("package.domains must name at least one domain")
        if not self.levels or any(not 1 <= lvl <= 10 for lvl in self.levels):
            raise ValueError("package.levels must be levels in 1-10")
        return self
