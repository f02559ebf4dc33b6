"""Config of stage 4.3 (adas): the search over agent designs that writes `adas_optimized_model/`.

Every knob of `agent_forge.stages.adas` lives here; `agent-forge run adas.max_generations=4` overrides one.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import Section


class MetaAgentConfig(Section):
    """The optional meta-agent: a model behind an OpenAI-compatible endpoint that writes new blocks as code."""

    endpoint: str | None = Field(
        None, description="base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000); none: evolution only")
    model: str = Field("agent", description="the model name sent in each chat-completions request")
    api_key_env: str | None = Field(None, description="environment variable holding the endpoint's API key")
    proposals: int = Field(2, ge=1, le=16, description="code proposals asked for per generation")
    timeout_s: float = Field(60.0, gt=0, description="seconds to wait for one proposal request")
    cpu_seconds: float = Field(60.0, gt=0, description="CPU seconds a generated block may use per evaluation")
    memory_mib: int = Field(1024, ge=64, description="address space a generated block's process may use (MiB)")
    wall_seconds: float = Field(600.0, gt=0, description="wall-clock limit of one sandboxed evaluation")


class AdasConfig(Section):
    """Stage 4.3: an archive of agent designs, evolved by selection, mutation and crossover until it plateaus."""

    levels: list[int] = Field(
        default_factory=lambda: list(range(1, 11)), description="task levels the designs are scored on")
    val_items: int = Field(3, ge=1, description="validation items per domain and level (every design's fitness)")
    test_items: int = Field(
        20, ge=1, description="test items per domain and level for the entering and the chosen design (as "
                              "`agent-forge eval --method generate --n N` scores them)")
    children: int = Field(4, ge=1, le=64, description="designs proposed by mutation/crossover per generation")
    max_generations: int = Field(6, ge=0, description="generations at most (after the hand-designed seeds)")
    patience: int = Field(
        2, ge=1, description="stop when the best lower confidence bound has not improved for this many generations")
    tournament: int = Field(3, ge=2, description="designs drawn per parent selection (the best of them is a parent)")
    crossover: float = Field(0.3, ge=0, le=1, description="probability that a child is a crossover of two parents")
    mutations: int = Field(2, ge=1, le=6, description="most design fields one mutation changes")
    bootstrap: int = Field(2000, ge=100, description="bootstrap resamples of each confidence interval")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="level of every confidence interval")
    max_cost_ratio: float = Field(
        4.0, gt=1, description="a design costing more than this many times the entering design's tokens per answer "
                               "(validation) stays in the archive but is neither a parent nor the choice; one certain to "
                               "cost more stops scoring once it has spent this budget for every validation item")
    meta_agent: MetaAgentConfig = Field(MetaAgentConfig(), description="optional code-writing meta-agent")

    @model_validator(mode="after")
    def _checks(self):
        if not self.levels or any(not 1 <= lvl <= 10 for lvl in self.levels):
            raise ValueError("adas.levels must be levels in 1-10")
        return self
