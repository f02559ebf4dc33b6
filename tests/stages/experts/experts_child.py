"""Runs the experts stage in its own process, for the SIGKILL resume test (`test_experts_kill.py`).

    python tests/stages/experts/experts_child.py ENTERING STAGE_DIR METRICS_JSON CONFIG_JSON

Builds the stage context as `test_experts_stage.py` does (a `ForgeConfig` with the given `experts` section,
the entering agent as the input model) and writes the stage's metrics to METRICS_JSON when it finishes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(entering: str, stage_dir: str, metrics_path: str, experts_json: str) -> None:
    import torch

    torch.set_num_threads(1)  # the same arithmetic as the parent's uninterrupted run
    from agent_forge.config import ForgeConfig
    from agent_forge.stage_contract import StageContext, StageInputs
    from agent_forge.stages.experts import run

    cfg = ForgeConfig.model_validate({"device": "cpu", "experts": json.loads(experts_json)})
    ctx = StageContext.create("experts", cfg, StageInputs(models={"model": Path(entering)}), Path(stage_dir))
    result = run(ctx)
    Path(metrics_path).write_text(json.dumps(result.metrics, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:5])
