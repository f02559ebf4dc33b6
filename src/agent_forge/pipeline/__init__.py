"""Running the stages: the run directory, its manifest, resume after a crash, and status reports.

`run_pipeline(cfg, until=..., resume=...)` is what `agent-forge run` calls; `status_view(run_dir)` is
`agent-forge status`. The rules for re-runs and resume are in `runner.py`'s docstring.

Exercise: `python -m pytest tests/pipeline`.
"""

from .lock import RunLock, is_locked
from .manifest import CONFIG_NAME, DONE, FAILED, MANIFEST_NAME, PENDING, RUNNING, Manifest, StageRecord
from .outputs import check_output
from .runner import METRICS_NAME, run_dir_for, run_pipeline, stage_dir_name, to_jsonable
from .status import StageStatus, models_table, run_status, status_table, status_view

__all__ = [
    "CONFIG_NAME", "DONE", "FAILED", "MANIFEST_NAME", "METRICS_NAME", "PENDING", "RUNNING", "Manifest", "RunLock",
    "StageRecord", "StageStatus", "check_output", "is_locked", "run_dir_for", "run_pipeline", "run_status",
    "stage_dir_name", "status_table", "status_view", "models_table", "to_jsonable",
]
