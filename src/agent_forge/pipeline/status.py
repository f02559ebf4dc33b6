"""What a run has done so far: one row per stage with status, duration and headline metrics, then its models.

`status_view(run_dir)` is what `agent-forge status` (and the end of `agent-forge run`) prints: `status_table`
(a running stage shows how long it has been going; a missing value shows as "-", hit rates as percentages)
followed by `models_table` (every finished stage's model folders, relative to the run directory when inside it).

Exercise: `agent-forge status runs/tiny`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..evaluation.table import FitTable
from .lock import is_locked
from .manifest import DONE, FAILED, RUNNING, Manifest, resolve_recorded
from .runner import format_duration, format_summary, headline_metrics

INTERRUPTED = "interrupted"  # shown for "running" when no process holds the run's lock any more
_STYLE = {DONE: "green", FAILED: "red", RUNNING: "yellow", INTERRUPTED: "red"}


@dataclass
class StageStatus:
    """One stage as `status` shows it; `elapsed_s` is how long a running stage has been going."""

    stage: str
    dir: str
    status: str
    duration_s: float | None
    attempts: int
    headline: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    elapsed_s: float | None = None


def _seconds_since(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        started = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - started).total_seconds())


def run_status(run_dir: Path | str) -> tuple[Manifest, list[StageStatus]]:
    """Read the manifest (ForgeError if there is none) and each finished stage's headline metrics."""
    run_dir = Path(run_dir)
    manifest = Manifest.load(run_dir)
    live = is_locked(run_dir)
    rows = []
    for record in manifest.stages.values():
        status = record.status
        if status == RUNNING and not live:
            status = INTERRUPTED
        headline: dict[str, Any] = {}
        if record.status == DONE and record.metrics:
            try:
                headline = headline_metrics(json.loads(resolve_recorded(run_dir, record.metrics).read_text()))
            except (OSError, json.JSONDecodeError):
                headline = {"metrics": "unreadable"}
        elapsed = _seconds_since(record.started_at) if status == RUNNING else None
        rows.append(StageStatus(record.name, record.dir, status, record.duration_s, record.attempts, headline,
                                record.error, dict(record.outputs) if record.status == DONE else {}, elapsed))
    return manifest, rows


def status_table(run_dir: Path | str) -> Table:
    """A rich table of `run_status`, titled with the run's name, config hash and seed."""
    manifest, rows = run_status(run_dir)
    table = FitTable(title=escape(f"run {manifest.name} (config {manifest.config_hash}, seed {manifest.seed})"))
    table.add_column("stage")
    table.add_column("status", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("key metrics")
    for row in rows:
        style = _STYLE.get(row.status)
        status = f"[{style}]{row.status}[/]" if style else row.status
        if row.attempts > 1:
            status += f" ({row.attempts} attempts)"
        duration = f"{format_duration(row.elapsed_s)} so far" if row.elapsed_s is not None else format_duration(row.duration_s)
        detail = format_summary(row.headline) if row.headline else (row.error or "-")
        table.add_row(escape(row.dir), status, duration, escape(detail))
    return table


def models_table(run_dir: Path | str) -> Table | None:
    """Every finished stage's models (output key and folder); None when no stage has finished yet."""
    _, rows = run_status(run_dir)
    outputs = [(row.dir, key, path) for row in rows for key, path in row.outputs.items()]
    if not outputs:
        return None
    table = FitTable(title="models (paths relative to the run directory unless absolute)", key_columns=2)
    for column in ("stage", "model", "path"):
        table.add_column(column)
    for stage_dir, key, path in outputs:
        table.add_row(escape(stage_dir), escape(key), escape(path))
    return table


def status_view(run_dir: Path | str) -> Group:
    """What `agent-forge status` prints: the run directory, `status_table`, then `models_table` once a stage
    has finished."""
    models = models_table(run_dir)
    where = Text(f"run directory {Path(run_dir).resolve()}", overflow="fold")
    return Group(where, status_table(run_dir), *([models] if models is not None else []))
