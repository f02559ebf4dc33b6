"""The stages of the pipeline and the contract they share.

Each stage is a subpackage exposing `run(cfg, inputs, stage_dir) -> StageResult`. `STAGES` maps the stage
name to the dotted path of that function; the pipeline imports it lazily so that a run of the first stages
never imports the machinery of later ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Ordered: the pipeline runs the configured subset in this order.
STAGES: dict[str, str] = {
    "seed": "agent_forge.stages.seed:run",
    "evomerge": "agent_forge.stages.evomerge:run",
    "quietstar": "agent_forge.stages.quietstar:run",
    "bitnet": "agent_forge.stages.bitnet:run",
    "curriculum": "agent_forge.stages.curriculum:run",
}


@dataclass
class StageInputs:
    """What a stage receives: the previous stage's saved models, by key."""

    models: dict[str, Path] = field(default_factory=dict)
    # outputs of every finished stage so far, by stage name (for stages that need more than the previous one)
    history: dict[str, dict[str, Path]] = field(default_factory=dict)


@dataclass
class StageResult:
    """What a stage returns: its saved models, by key ("model" for the main output), and its metrics."""

    models: dict[str, Path]
    metrics: dict[str, Any]


StageFn = Callable[[Any, StageInputs, Path], StageResult]


def resolve_stage(name: str) -> StageFn:
    """Import and return the `run` function of a registered stage."""
    target = STAGES[name]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)
