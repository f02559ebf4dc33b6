"""The one list of pipeline stages, in run order: each name and where its `run(ctx)` function lives.

Light on purpose (no imports): the config validates stage names against it, the runner resolves stage
functions from it lazily, so that a run of the first stages never imports the machinery of later ones.
Stages 3-5 add their line here as they land.
"""

from __future__ import annotations

STAGES: dict[str, str] = {
    "seed": "agent_forge.stages.seed:run",
    "evomerge": "agent_forge.stages.evomerge:run",
    "quietstar": "agent_forge.stages.quietstar:run",
    "bitnet": "agent_forge.stages.bitnet:run",
    "curriculum": "agent_forge.stages.curriculum:run",
    "experts": "agent_forge.stages.experts:run",
    "baking": "agent_forge.stages.baking:run",
    "tools": "agent_forge.stages.tools:run",
    "adas": "agent_forge.stages.adas:run",
    "package": "agent_forge.stages.package:run",
}

# the original design's later stages, named so that configs may list them and get a clear "not implemented"
PLANNED_STAGES: list[str] = []

# the stage that closes every run (the deployable bundle): after the planned stages too, whatever lands later
FINAL_STAGE = "package"

# a stage's directory is `NN-<name>` with NN its position here, whatever subset of stages a run uses; the
# original design's order, planned stages included, so that a directory keeps its number when they land
STAGE_ORDER = ["seed", "evomerge", "quietstar", "bitnet", "curriculum", "experts", "baking", "tools", "adas",
               FINAL_STAGE]
assert set(STAGES) | set(PLANNED_STAGES) == set(STAGE_ORDER)
