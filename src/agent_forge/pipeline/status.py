"""What a run has done so far: one row per stage with status, duration and headline metrics.

Exercise: `agent-forge status runs/tiny`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from .lock import is_locked
from .manifest import DONE, FAILED, RUNNING, Manifest, resolve_recorded
from .runner import format_duration, format_summary, headline_metrics

INTERRUPTED = "interrupted"  # shown for "running" when no process holds the run's lock any more
_STYLE = {DONE: "green", FAILED: "red", RUNNING: "yellow", INTERRUPTED: "red"}


@dataclass
class StageStatus:
    """One stage as `status` shows it."""

    stage: str
    dir: str
    status: str
    duration_s: float | None
    attempts: int
    headline: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


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
        rows.append(StageStatus(record.name, record.dir, status, record.duration_s, record.attempts, headline, record.error))
    return manifest, rows


def status_table(run_dir: Path | str) -> Table:
    """A rich table of `run_status`, titled with the run's name, config hash and seed."""
    manifest, rows = run_status(run_dir)
    table = Table(title=escape(f"run {manifest.name} (config {manifest.config_hash}, seed {manifest.seed})"))
    for column, justify in [("stage", "left"), ("status", "left"), ("duration", "right"), ("key metrics", "left")]:
        table.add_column(column, justify=justify)
    for row in rows:
        style = _STYLE.get(row.status)
        status = f"[{style}]{row.status}[/]" if style else row.status
        if row.attempts > 1:
            status += f" ({row.attempts} attempts)"
        detail = format_summary(row.headline) if row.headline else (row.error or "")
        table.add_row(escape(row.dir), status, format_duration(row.duration_s), escape(detail))
    return table
