"""The stages of the pipeline: one subpackage per stage, each exposing `run(ctx: StageContext) -> StageResult`.

The contract (`StageContext`, `StageInputs`, `StageResult`) is in `agent_forge.stage_contract` and re-exported
here; the registry is `agent_forge.registry.STAGES`. `resolve_stage(name)` imports a stage's `run` lazily, so a
run of the first stages never imports the machinery of later ones.
"""

from __future__ import annotations

import importlib

from ..registry import STAGES
from ..stage_contract import RESUME_DIR, StageContext, StageFn, StageInputs, StageResult


def resolve_stage(name: str) -> StageFn:
    """Import and return the `run` function of a registered stage."""
    target = STAGES[name]
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


__all__ = ["RESUME_DIR", "STAGES", "StageContext", "StageFn", "StageInputs", "StageResult", "resolve_stage"]
