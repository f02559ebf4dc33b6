"""Commands about runs: `run`, `sweep`, `stages`, `config show|reference`, `status`, `report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from .app import INTERRUPTED, app, default_config_path

# ---------------------------------------------------------------------------------------------------- run


@app.command()
def run(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Config overrides key.path=value, e.g. name=try2 seed_stage.pretrain.steps=10."
    ),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file, or a packaged config's name: tiny (the default), smoke, ..."
    ),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this stage (`agent-forge stages` lists them)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an unfinished run, redoing any half-finished stage."),
) -> None:
    """Run the pipeline into runs/<name>/ (see `agent-forge status` for its progress).

    Re-running a finished run does nothing.

    An unfinished run, or one made with a different config, is only continued with --resume, which keeps the
    finished stages and redoes any half-finished one; otherwise choose a new name=... .
    """
    from ..config import DEFAULT_CONFIG, load_config, resolve_config
    from ..pipeline import run_dir_for, run_pipeline, status_view
    from ..pipeline.logfile import quiet_libraries

    config_path = resolve_config(config) if config else default_config_path()
    cfg = load_config(config_path, list(overrides or []))
    target = run_dir_for(cfg)
    console = Console()
    which = "" if config else f" (the default, {DEFAULT_CONFIG})"
    # one line whatever the width, so that it can be found (and copied) as it is
    console.print(f"config {config_path.resolve()}{which} -> run directory {target}", markup=False, highlight=False,
                  soft_wrap=True)
    quiet_libraries()
    try:
        run_dir = run_pipeline(cfg, until=until, resume=resume, console=console)
    except KeyboardInterrupt:
        again = ["agent-forge run"] + ([f"--config {config}"] if config else []) + list(overrides or []) + ["--resume"]
        typer.echo(f"interrupted; the run is resumable: {' '.join(again)}", err=True)
        raise typer.Exit(INTERRUPTED) from None
    console.print(status_view(run_dir))


@app.command()
def sweep(
    overrides: Optional[list[str]] = typer.Argument(None, help="Config overrides key.path=value, as `run` takes them."),
    seeds: str = typer.Option(..., "--seeds", help="Seeds to run: a range or a list, e.g. 0-4 or 0,2,5."),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file, or a packaged config's name: tiny (the default), smoke, ..."
    ),
    until: Optional[str] = typer.Option(None, "--until", help="Stop every seed's run after this stage."),
    resume: bool = typer.Option(False, "--resume", help="Passed to every seed's run (see `run --help`)."),
    report_only: bool = typer.Option(False, "--report-only", help="Only summarize the seeds' existing runs."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as markdown (for the README)."),
) -> None:
    """Run the pipeline once per seed (runs <name>-seed<k>) and report every stage's effect across the seeds.

    Writes runs/<name>-sweep/sweep.json; `agent-forge report runs/<name>-sweep` shows the table again.
    """
    from ..pipeline.logfile import quiet_libraries
    from ..pipeline.sweep import run_sweep

    quiet_libraries()
    console = Console()
    try:
        data = run_sweep(config, list(overrides or []), seeds, until=until, resume=resume, report_only=report_only,
                         console=console)
    except KeyboardInterrupt:
        typer.echo("interrupted; the sweep's runs are resumable: add --resume", err=True)
        raise typer.Exit(INTERRUPTED) from None
    _print_sweep(data, markdown)


def _print_sweep(data: dict, markdown: bool) -> None:
    from ..pipeline.report_sweep import markdown_sweep, rich_sweep

    if markdown:
        typer.echo(markdown_sweep(data), nl=False)
        return
    console = Console()
    for renderable in rich_sweep(data):
        console.print(renderable)


# --------------------------------------------------------------------------------------------------- stages


def stage_summaries() -> dict[str, str]:
    """Each registered stage (run order) with the first line of its package's docstring, read without importing it."""
    import ast
    import importlib.util

    from ..registry import STAGES

    summaries = {}
    for name, target in STAGES.items():
        module = target.split(":")[0]
        spec = importlib.util.find_spec(module)
        text = ""
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
            text = doc.strip().splitlines()[0] if doc.strip() else ""
        summaries[name] = text
    return summaries


@app.command()
def stages() -> None:
    """List the pipeline's stages in run order, one line each (the names `stages=` and `--until` take)."""
    from ..registry import PLANNED_STAGES

    summaries = stage_summaries()
    width = max(len(name) for name in [*summaries, *PLANNED_STAGES])
    for name, summary in summaries.items():
        typer.echo(f"{name:<{width}}  {summary}")
    if PLANNED_STAGES:
        typer.echo(f"{'':<{width}}  planned, not implemented yet: {', '.join(PLANNED_STAGES)}")


# --------------------------------------------------------------------------------------------------- config

config_app = typer.Typer(
    cls=TyperGroup, no_args_is_help=True, add_completion=False,
    help="Explain the configuration: the resolved config with descriptions, or the full reference.",
)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides key.path=value, as `run` takes them."),
    config: Optional[str] = typer.Option(
        None, "--config", "-c", help="YAML file, or a packaged config's name (default: tiny, as `run`)."
    ),
) -> None:
    """Print the config `run` would use (same --config and overrides) as YAML, each key with its description
    and default."""
    from ..config import load_config, resolve_config
    from ..config.reference import show_config

    config_path = resolve_config(config) if config else default_config_path()
    cfg = load_config(config_path, list(overrides or []))
    given = f" with {' '.join(overrides)}" if overrides else ""
    typer.echo(f"# config {config_path.resolve()}{given}; config hash {cfg.digest()}")
    typer.echo(show_config(cfg), nl=False)


@config_app.command("reference")
def config_reference() -> None:
    """Print the reference of every config key as markdown (docs/config.md is this output)."""
    from ..config.reference import reference_markdown

    typer.echo(reference_markdown(), nl=False)


# --------------------------------------------------------------------------------------------------- status


@app.command()
def status(run_dir: Path = typer.Argument(..., help="A run directory, or a run name under runs/.")) -> None:
    """Show each stage of a run (status, duration or time so far, headline metrics) and the models it wrote."""
    from ..pipeline import MANIFEST_NAME, status_view

    if not (run_dir / MANIFEST_NAME).exists() and (Path("runs") / run_dir / MANIFEST_NAME).exists():
        run_dir = Path("runs") / run_dir
    Console().print(status_view(run_dir))


# --------------------------------------------------------------------------------------------------- report


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A run directory, or a run name under runs/."),
    markdown: bool = typer.Option(False, "--markdown", help="Print markdown (for pasting into a README) instead of tables."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report here instead of <run>/report.html."),
) -> None:
    """Show a run's trajectory (suite accuracy entering and leaving each stage) and each stage's own tables.

    Always writes a self-contained HTML page with plots (<run>/report.html unless --html is given). For a sweep
    (runs/<name>-sweep) it shows the table of stage effects across seeds instead, recomputed from its runs.
    """
    from ..pipeline.report import load_run, markdown_report, rich_report, write_html
    from ..pipeline.sweep import is_sweep_dir, read_sweep

    if is_sweep_dir(run_dir):
        _print_sweep(read_sweep(run_dir), markdown)
        return
    data = load_run(run_dir)
    if markdown:
        typer.echo(markdown_report(data))
    else:
        console = Console()
        for renderable in rich_report(data):
            console.print(renderable)
    written = write_html(data, html)
    typer.echo(f"wrote {written}", err=markdown)

