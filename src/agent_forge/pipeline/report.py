"""What a finished (or partly finished) run achieved: the agent's trajectory and each stage's own results.

    agent-forge report runs/tiny                # rich tables in the terminal, and runs/tiny/report.html
    agent-forge report tiny --markdown          # the same tables as markdown (the README's results section)

`load_run(run)` reads a run directory (a path, or a run name under `runs/`): its manifest, each stage's
`metrics.json`, `trajectory.json` (written by the runner after every stage, `evaluation.trajectory`) and PNG
plots. From it:
* `trajectory_rows(run)`: one row per stage (suite accuracy, domain mean, of the model it received and the
  one it leaves, the change in points, the regression flag, size on disk, decode speed, duration; with
  `report.general_text`, the perplexity on general English text of both models), then one
  indented sub-row per secondary output (the seed's specialists or base, bitnet's packed export). A run
  recorded before trajectories existed has none; the report says so and still shows the stage tables.
* `stage_tables(run)` (in `report_stages.py`): each stage's own result table, built from its `metrics.json` (the numbers the stage
  itself measured: its comparisons, its controls), as columns, rows of formatted cells and a closing note.
Every table is built once as cells and then rendered as markdown (`markdown_report`), rich (`rich_report`)
or HTML (`pipeline.report_html`), so all three show the same numbers. Accuracies are percentages (0-100).
Above the trajectory, `invocation_lines(run)` says how the run was computed: each invocation's command line
and torch thread count, from the manifest's history.

A sweep (`pipeline.sweep`, `agent-forge sweep`) has its own tables, in `report_sweep.py`.

Exercise: `agent-forge report runs/tiny` or `python -m pytest tests/test_report.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ForgeError
from ..evaluation.table import cell, markdown_table
from ..evaluation.trajectory import TRAJECTORY_FILE
from .manifest import DONE, MANIFEST_NAME, Manifest, invocations
from .report_stages import stage_tables
from .runner import METRICS_NAME, format_duration

REPORT_HTML = "report.html"
RUNS_ROOT = Path("runs")
TRAJECTORY_COLUMNS = ["stage", "entering", "leaving", "change", "flag", "size (MB)", "decode tok/s", "duration"]
TRAJECTORY_TITLE = "trajectory: suite accuracy (%, mean over domains) of the model each stage received and left"
PERPLEXITY_COLUMNS = ["ppl entering", "ppl leaving"]  # shown only for runs that measured it
NOT_RECORDED = "The trajectory was not recorded for this run (no stage has a trajectory.json; runs made before " \
               "the runner measured every stage have none)."


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class StageData:
    """One stage of a run as the report needs it."""

    name: str
    dir: Path
    status: str
    duration_s: float | None
    metrics: dict | None
    trajectory: dict | None
    plots: list[Path] = field(default_factory=list)


@dataclass
class RunData:
    path: Path
    manifest: Manifest
    stages: list[StageData]

    @property
    def has_trajectory(self) -> bool:
        return any(s.trajectory is not None for s in self.stages)


def resolve_run(run: str | Path) -> Path:
    """A run directory from a path or a run name under `runs/`; ForgeError when there is none."""
    path = Path(run).expanduser()
    if not path.is_dir() and not path.is_absolute() and (RUNS_ROOT / path).is_dir():
        path = RUNS_ROOT / path
    if not path.exists():
        raise ForgeError(f"run not found: {run} (neither a directory nor a run name under {RUNS_ROOT}/)")
    if not path.is_dir():
        raise ForgeError(f"{run} is not a run directory")
    if not (path / MANIFEST_NAME).is_file():
        raise ForgeError(f"{path} is not an agent-forge run ({MANIFEST_NAME} not found)")
    return path


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ForgeError(f"{path} is unreadable ({type(exc).__name__}); the run is damaged") from None
    return data if isinstance(data, dict) else None


def stage_plots(stage_dir: Path) -> list[Path]:
    """The PNG plots a stage wrote (e.g. `evolution.png`, `plots/*.png`), in path order."""
    if not stage_dir.is_dir():
        return []
    found = (p for p in stage_dir.rglob("*.png") if p.is_file())
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(stage_dir).parts))


def load_run(run: str | Path) -> RunData:
    """The manifest, and for every stage its metrics, trajectory and plots (None/empty where absent)."""
    path = resolve_run(run)
    manifest = Manifest.load(path)
    stages = []
    for record in manifest.stages.values():
        stage_dir = path / record.dir
        done = record.status == DONE
        stages.append(StageData(
            name=record.name, dir=stage_dir, status=record.status, duration_s=record.duration_s,
            metrics=_read_json(stage_dir / METRICS_NAME) if done else None,
            trajectory=_read_json(stage_dir / TRAJECTORY_FILE) if done else None,
            plots=stage_plots(stage_dir) if done else [],
        ))
    return RunData(path, manifest, stages)


# ------------------------------------------------------------------------------------------ the trajectory


@dataclass
class TrajectoryRow:
    """One line of the trajectory table: a stage's main output, or (`sub`) one of its secondary outputs."""

    stage: str
    output: str | None  # the measured output's key; None when the stage has no measurement
    sub: bool = False
    entering: float | None = None
    entering_input: str | None = None
    leaving: float | None = None
    change: float | None = None
    flag: str = "-"  # ok | undeclared | declared | none (nothing to compare) | not recorded | a stage status
    reason: str | None = None  # a declared trade-off's reason
    max_drop: float | None = None
    size_bytes: int | None = None
    tokens_per_s: float | None = None
    duration_s: float | None = None
    ppl_entering: float | None = None  # general-text perplexity (evaluation.general_text), when measured
    ppl_leaving: float | None = None

    @property
    def label(self) -> str:
        if self.sub:
            return f"↳ {self.output}"
        if self.output and self.output != "model":
            return f"{self.stage} ({self.output})"
        return self.stage

    @property
    def flag_text(self) -> str:
        if self.flag == "undeclared":
            return f"UNDECLARED REGRESSION (lost more than {cell(self.max_drop)} points)"
        if self.flag == "declared":
            return f"declared trade-off: {self.reason}"
        if self.flag == "none":
            return "-"
        return "" if self.sub else self.flag

    def cells(self, perplexity: bool = False) -> list[str]:
        """The row's cells; `perplexity` adds the two general-text perplexity cells after the flag."""
        return [
            self.label,
            cell(self.entering, 2),
            cell(self.leaving, 2),
            "-" if self.change is None else f"{self.change:+.2f}",
            self.flag_text,
            *([cell(self.ppl_entering, 2), cell(self.ppl_leaving, 2)] if perplexity else []),
            "-" if self.size_bytes is None else f"{self.size_bytes / 1e6:.2f}",
            cell(self.tokens_per_s, 1),
            "" if self.sub else format_duration(self.duration_s),
        ]


def _flag(trajectory: dict) -> str:
    if trajectory.get("change") is None:
        return "none"
    if trajectory.get("regression"):
        return "declared" if trajectory.get("declared") else "undeclared"
    return "ok"


def trajectory_rows(run: RunData) -> list[TrajectoryRow]:
    """One row per stage, each followed by its secondary outputs' sub-rows; [] when no trajectory was recorded."""
    if not run.has_trajectory:
        return []
    rows = []
    for stage in run.stages:
        t = stage.trajectory
        if t is None:
            rows.append(TrajectoryRow(stage.name, None, flag=stage.status if stage.status != DONE else "not recorded",
                                      duration_s=stage.duration_s))
            continue
        leaving = t.get("leaving") or {}
        main = t.get("main_output") if t.get("main_output") in leaving else next(iter(leaving), None)
        entering = t.get("entering") or None
        m = leaving.get(main, {})
        rows.append(TrajectoryRow(
            stage.name, main,
            entering=_domain_mean(entering["measurement"]) if entering else None,
            entering_input=entering.get("input") if entering else None,
            leaving=_domain_mean(m), change=t.get("change"), flag=_flag(t),
            reason=t.get("declared") or t.get("trade_off"), max_drop=t.get("max_drop"),
            size_bytes=m.get("size_bytes"), tokens_per_s=m.get("decode_tokens_per_s"), duration_s=stage.duration_s,
            ppl_entering=_perplexity(entering["measurement"]) if entering else None, ppl_leaving=_perplexity(m),
        ))
        for key, other in leaving.items():
            if key != main:
                rows.append(TrajectoryRow(stage.name, key, sub=True, leaving=_domain_mean(other), flag="",
                                          size_bytes=other.get("size_bytes"),
                                          tokens_per_s=other.get("decode_tokens_per_s"),
                                          ppl_leaving=_perplexity(other)))
    return rows


def _perplexity(measurement: dict | None) -> float | None:
    return ((measurement or {}).get("general_text") or {}).get("perplexity")


def has_perplexity(rows: list[TrajectoryRow]) -> bool:
    """Whether any row has a general-text perplexity (the run measured it), so the table shows its columns."""
    return any(r.ppl_entering is not None or r.ppl_leaving is not None for r in rows)


def trajectory_columns(rows: list[TrajectoryRow]) -> list[str]:
    """The trajectory table's columns: the perplexity pair after the flag when the run measured it."""
    if not has_perplexity(rows):
        return list(TRAJECTORY_COLUMNS)
    at = TRAJECTORY_COLUMNS.index("flag") + 1
    return TRAJECTORY_COLUMNS[:at] + PERPLEXITY_COLUMNS + TRAJECTORY_COLUMNS[at:]


def perplexity_note(run: "RunData") -> str:
    """What the perplexity columns measure (text, tokens, window), from the first measurement that has it."""
    for stage in run.stages:
        for m in ((stage.trajectory or {}).get("leaving") or {}).values():
            g = m.get("general_text")
            if g:
                return (f"ppl: perplexity on general English text ({g['source']}, the first {g['tokens']} tokens in "
                        f"windows of {g['window']}; evaluation.general_text), lower is better.")
    return ""


def _domain_mean(measurement: dict | None) -> float | None:
    return ((measurement or {}).get("suite") or {}).get("domain_mean")


def main_measurement(stage: StageData) -> dict | None:
    """The measurement of the model a stage leaves (its main output), or None."""
    t = stage.trajectory
    if not t or not t.get("leaving"):
        return None
    leaving = t["leaving"]
    return leaving.get(t.get("main_output")) or next(iter(leaving.values()))


# --------------------------------------------------------------------------------------------- renderers


def invocation_lines(run: RunData, quote: str = "`") -> list[str]:
    """One line per recorded invocation: what it did, its command as typed (between `quote`s), the torch threads."""
    lines = []
    for entry in invocations(run.manifest):
        threads = entry.get("threads")
        lines.append(f"{entry.get('event', 'run')} {entry.get('at', '')}: {quote}{entry.get('command', '?')}{quote} "
                     f"({threads} torch thread{'' if threads == 1 else 's'})")
    return lines


def markdown_report(run: RunData) -> str:
    """The trajectory table and every stage's table as markdown, ready to paste into a README."""
    computed = "".join(f"- {line}\n" for line in invocation_lines(run))
    parts = ["### trajectory\n\n" + (f"Computed by:\n\n{computed}\n" if computed else "") + f"{TRAJECTORY_TITLE}.\n"]
    rows = trajectory_rows(run)
    if rows:
        ppl = has_perplexity(rows)
        parts.append(markdown_table(trajectory_columns(rows), [r.cells(ppl) for r in rows]) + "\n")
        if ppl:
            parts.append(perplexity_note(run) + "\n")
    else:
        parts.append(NOT_RECORDED + "\n")
    for table in stage_tables(run):
        parts.append(f"### {table.heading}\n\n{table.markdown()}\n")
    return "\n".join(parts)


_FLAG_STYLE = {"undeclared": "bold red", "declared": "yellow", "ok": "green"}


def rich_trajectory_table(rows: list[TrajectoryRow]):
    from rich.markup import escape

    from ..evaluation.table import FitTable

    table = FitTable(title=TRAJECTORY_TITLE)  # stage names stay whole; too wide a table is split, not cut
    ppl = has_perplexity(rows)
    for column in trajectory_columns(rows):
        table.add_column(column, justify="left" if column in ("stage", "flag") else "right")
    for row in rows:
        cells = [escape(c) for c in row.cells(ppl)]
        if row.sub:
            cells[0] = "  " + cells[0]
        style = _FLAG_STYLE.get(row.flag)
        if style:
            cells[4] = f"[{style}]{cells[4]}[/]"
        table.add_row(*cells, style="dim" if row.sub else None)
    return table


def rich_report(run: RunData) -> Iterator[Any]:
    """Renderables for a rich console: run header, trajectory table (or why there is none), stage tables."""
    from rich.markup import escape
    from rich.text import Text

    from ..evaluation.table import rows_table

    m = run.manifest
    yield Text(f"run {m.name} (config {m.config_hash}, seed {m.seed}) at {run.path}", style="bold")
    for line in invocation_lines(run):
        yield Text(line)
    rows = trajectory_rows(run)
    yield rich_trajectory_table(rows) if rows else Text(NOT_RECORDED, style="yellow")
    if rows and has_perplexity(rows):
        yield Text(perplexity_note(run))
    for table in stage_tables(run):
        if table.columns:
            yield rows_table(escape(table.heading), table.columns, [[escape(c) for c in r] for r in table.rows])
        else:
            yield Text(table.heading, style="bold")
        if table.note:
            yield Text(table.note)
        yield Text("")


def write_html(run: RunData, path: Path | str | None = None) -> Path:
    """Write the self-contained HTML report (default `<run>/report.html`); returns its path."""
    from ..utils import atomic_write_text
    from .report_html import render_html

    target = Path(path) if path is not None else run.path / REPORT_HTML
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, render_html(run))
    except OSError as exc:
        raise ForgeError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
