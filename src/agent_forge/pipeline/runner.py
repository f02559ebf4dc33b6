"""Run the configured stages in order inside `runs/<name>/`, recording everything in the manifest; resume safely.

Layout: `config.yaml` (the resolved config), `manifest.json`, and one `NN-<stage>/` per stage (NN is the
stage's fixed position in `STAGE_ORDER`, so a directory keeps its name whatever subset of stages runs), each
holding the stage's model folders and the `metrics.json` the runner writes from the stage's result.

Rules (the user-facing side is in `agent-forge run --help`):
- A stage is finished only when the manifest says "done". That entry is written last: after the stage
  function returned, its outputs passed `check_output`, `metrics.json` was written atomically and the whole
  stage directory was fsync'ed. The finished stages always form a prefix of the stage list: recomputing a
  stage invalidates every stage after it, since they were derived from it.
- Re-running a finished run (same config) does nothing and says so; with `--until`, "finished" means every
  stage up to that one.
- An existing run is never continued silently: if it is unfinished, `--resume` is required; if its config
  hash differs, plain `run` refuses (use a new `name=` or `--resume`). `--resume` with a changed config keeps
  the finished stages as they are, records the change in the manifest history, and runs the remaining
  stages with the new config.
- `--resume` (after a crash, Ctrl-C or SIGKILL at any point): deletes leftover temporary files and the
  directory of every stage that is not "done" (whatever half-written models it holds), re-checks the
  outputs of every "done" stage with `check_output`, and recomputes from the first stage that fails the
  check (a warning names the problem). No stage ever receives a model from a stage that is not "done".
- Every stage gets a `StageContext` (seeded with `derive_seed(cfg.seed, stage)` just before it runs, so a
  resumed run computes what an uninterrupted one would have; device and dtype resolved once; a scratch
  directory `<run>/.resume/<stage dir>` that survives a kill and is removed once the stage is done).
- After a stage returns, its outputs are measured on the full task suite (`evaluation.trajectory`) and
  `trajectory.json` is written beside `metrics.json`, before the stage is marked done: accuracy of the agent
  it received and the agent it leaves, size, decode speed, and whether it lost more than
  `report.max_undeclared_drop` points without declaring a trade-off (a warning names it).
- Everything the runner and the stages log goes to `<run>/log.txt` as well as the terminal.
- Every invocation that changes the run appends a history entry to the manifest (created / resumed / config
  changed) with the torch thread count it computed with (after `configure_threads(cfg.threads)`) and the
  command line that started it (`manifest.command_line`): a run resumed with other threads says so.
- A stage raising ForgeError is marked "failed" and the error is re-raised as one line; Ctrl-C marks the
  running stage "failed" ("interrupted") and re-raises KeyboardInterrupt. Both are resumable.

Exercise: `agent-forge run --config smoke` or `python -m pytest tests/pipeline`.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from rich.console import Console
from rich.markup import escape

from ..config import STAGE_ORDER, ForgeConfig
from ..errors import ForgeError
from ..registry import STAGES
from ..stage_contract import StageContext, StageInputs, StageResult
from ..stages import resolve_stage
from ..utils import (
    atomic_write_json,
    atomic_write_yaml,
    configure_threads,
    derive_seed,
    fsync_tree,
    is_temp_name,
    package_versions,
    remove_stale_temp,
)
from .logfile import run_log
from .lock import LOCK_NAME, RunLock
from .manifest import (
    CONFIG_NAME,
    DONE,
    FAILED,
    MANIFEST_NAME,
    PENDING,
    RUNNING,
    Manifest,
    StageRecord,
    invocation_record,
    record_path,
    utc_now,
)
from .outputs import check_output

StageFunction = Callable[[StageContext], StageResult]
log = logging.getLogger("agent_forge.pipeline")
METRICS_NAME = "metrics.json"
LOG_NAME = "log.txt"


def run_dir_for(cfg: ForgeConfig) -> Path:
    """`<run_root>/<name>` as an absolute path; ForgeError when the name is not a plain directory name."""
    name = cfg.name
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        raise ForgeError(f"run name {name!r} must be a plain directory name (no '/', not '.' or '..')")
    return (Path(cfg.run_root).expanduser() / name).resolve()


def stage_dir_name(stage: str) -> str:
    """`NN-<stage>`, NN being the stage's fixed position in the full stage order."""
    return f"{STAGE_ORDER.index(stage):02d}-{stage}"


def run_pipeline(
    cfg: ForgeConfig,
    *,
    until: str | None = None,
    resume: bool = False,
    stage_fns: Mapping[str, StageFunction] | None = None,
    console: Console | None = None,
    command: str | None = None,
) -> Path:
    """Run (or resume) the stages of `cfg` up to `until` in `runs/<name>/`; return the run directory.

    `stage_fns` maps stage names to functions and replaces the registry `agent_forge.stages.STAGES`
    (tests pass small real stages here). `command` is the command line recorded in the manifest's history
    (default: this process's own, `manifest.command_line()`). Raises ForgeError for anything the user can fix.
    """
    console = console or Console()
    stages = cfg.stage_list()
    target = _target_stages(stages, until)
    lookup = _stage_lookup(stages, stage_fns)
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)

    with RunLock(run_dir), run_log(run_dir / LOG_NAME):
        configure_threads(cfg.threads)  # before any history entry: each one records the thread count in use
        invocation = invocation_record(command)
        manifest, fresh = _open_run(run_dir, cfg, stages, resume, console, invocation)
        first_todo, problem = _first_stage_to_run(manifest, run_dir, stages)
        if first_todo >= len(target):
            what = "complete" if len(target) == len(stages) else f"complete up to stage {target[-1]!r}"
            console.print(f"run {escape(str(run_dir))} is {what}; nothing to do")
            return run_dir
        if not fresh and not resume:
            started = [s for s in stages if manifest.stages[s].status != PENDING]
            if problem:
                raise ForgeError(f"run {run_dir} is damaged ({problem}); pass --resume to recompute from there")
            if started:
                status = manifest.stages[stages[first_todo]].status
                raise ForgeError(
                    f"run {run_dir} is unfinished (stage {stages[first_todo]!r} is {status}); "
                    "pass --resume to continue it, or choose a new name=..."
                )
        if problem:
            console.print(f"[yellow]warning:[/] {escape(problem)}; recomputing from stage {stages[first_todo]!r}")
        if not fresh:
            _note(manifest, "resumed", cfg, **invocation)
        _invalidate_from(manifest, run_dir, stages[first_todo:])

        log.info("run %s: stages %s, config %s, %d thread(s), command: %s", run_dir, ", ".join(target[first_todo:]),
                 cfg.digest(), invocation["threads"], invocation["command"])
        for position, stage in enumerate(target[first_todo:], start=first_todo):
            console.print(f"[bold]stage {position + 1}/{len(stages)}: {stage}[/]")
            log.info("stage %d/%d: %s", position + 1, len(stages), stage)
            inputs = _stage_inputs(manifest, run_dir, stages[:position])
            _run_stage(cfg, manifest, run_dir, stage, lookup(stage), inputs, console)

        if len(target) == len(stages):
            console.print(f"[green]run complete:[/] {escape(str(run_dir))}")
        else:
            console.print(f"stopped after stage {target[-1]!r} (--until); continue later with --resume")
    return run_dir


def _target_stages(stages: list[str], until: str | None) -> list[str]:
    if until is None:
        return stages
    if until not in STAGE_ORDER:
        raise ForgeError(f"unknown stage {until!r} for --until; known stages: {', '.join(STAGE_ORDER)}")
    if until not in stages:
        raise ForgeError(f"--until {until!r} is not one of this run's stages ({', '.join(stages)})")
    return stages[: stages.index(until) + 1]


def _stage_lookup(stages: list[str], stage_fns: Mapping[str, StageFunction] | None) -> Callable[[str], StageFunction]:
    """Check up front that every stage can be run; import each stage's module only when it is about to run."""
    available = stage_fns if stage_fns is not None else STAGES
    missing = [s for s in stages if s not in available]
    if missing:
        raise ForgeError(
            f"stage(s) {', '.join(missing)} are not implemented yet; implemented: {', '.join(available) or 'none'}"
        )
    if stage_fns is not None:
        return lambda name: stage_fns[name]
    return resolve_stage


def _open_run(
    run_dir: Path, cfg: ForgeConfig, stages: list[str], resume: bool, console: Console, invocation: dict[str, Any]
) -> tuple[Manifest, bool]:
    """Load the run's manifest (checking it matches `cfg`) or create a new run; return (manifest, created)."""
    digest = cfg.digest()
    if not (run_dir / MANIFEST_NAME).exists():
        # a run killed before its first manifest write leaves at most these behind
        foreign = [p.name for p in run_dir.iterdir() if p.name not in {CONFIG_NAME, LOCK_NAME, LOG_NAME} and not is_temp_name(p.name)]
        if foreign:
            raise ForgeError(
                f"{run_dir} exists but is not an agent-forge run (no {MANIFEST_NAME}); choose another name= or move it"
            )
        if resume:
            console.print(f"nothing to resume at {escape(str(run_dir))}; starting a new run")
        remove_stale_temp(run_dir)
        atomic_write_yaml(run_dir / CONFIG_NAME, cfg.model_dump(mode="json"))
        manifest = Manifest(name=cfg.name, config_hash=digest, seed=cfg.seed, versions=package_versions())
        _sync_records(manifest, stages)
        _note(manifest, "created", cfg, **invocation)
        manifest.save(run_dir)
        return manifest, True

    manifest = Manifest.load(run_dir)
    if manifest.config_hash != digest:
        if not resume:
            raise ForgeError(
                f"run {run_dir} was made with a different config (hash {manifest.config_hash}, now {digest}); "
                "choose a new name=..., or pass --resume to keep its finished stages and run the rest with this config"
            )
        console.print(
            f"[yellow]warning:[/] the config changed since this run started ({manifest.config_hash} -> {digest}); "
            "finished stages are kept as they are, the remaining ones use the new config"
        )
        _note(manifest, "config-changed", cfg, previous_hash=manifest.config_hash, **invocation)
        manifest.config_hash = digest
        manifest.seed = cfg.seed
        atomic_write_yaml(run_dir / CONFIG_NAME, cfg.model_dump(mode="json"))
        manifest.save(run_dir)
    _sync_records(manifest, stages)
    return manifest, False


def _sync_records(manifest: Manifest, stages: list[str]) -> None:
    """Give every configured stage a record (in run order); records of stages no longer configured stay."""
    records = {name: manifest.stages.get(name) or StageRecord(name=name, dir=stage_dir_name(name)) for name in stages}
    records.update({name: rec for name, rec in manifest.stages.items() if name not in records})
    manifest.stages = records


def _note(manifest: Manifest, event: str, cfg: ForgeConfig, **extra: Any) -> None:
    """Append an invocation to the manifest history, with package versions when they changed."""
    entry: dict[str, Any] = {"at": utc_now(), "event": event, "config_hash": cfg.digest(), **extra}
    versions = package_versions()
    if versions != manifest.versions:
        entry["versions"] = versions
    manifest.history.append(entry)


def _first_stage_to_run(manifest: Manifest, run_dir: Path, stages: list[str]) -> tuple[int, str | None]:
    """Index of the first stage that is not done or whose outputs fail the check, and that problem if any."""
    for index, stage in enumerate(stages):
        record = manifest.stages[stage]
        if record.status != DONE:
            return index, None
        problem = _check_stage_outputs(record, run_dir)
        if problem:
            return index, f"stage {stage!r} is done but {problem}"
    return len(stages), None


def _check_stage_outputs(record: StageRecord, run_dir: Path) -> str | None:
    for key, path in {"metrics": record.metrics, **record.outputs}.items():
        if path is None:
            return f"its {key} output is not recorded"
        absolute = Path(path) if Path(path).is_absolute() else run_dir / path
        problem = check_output(absolute, deep=not Path(path).is_absolute())
        if problem:
            return f"its output {key!r}: {problem}"
    return None


def _invalidate_from(manifest: Manifest, run_dir: Path, stages: list[str]) -> None:
    """Reset these stages to pending (persisted first) and delete their directories and any temp leftovers."""
    for stage in stages:
        record = manifest.stages[stage]
        if record.status != PENDING:
            record.reset()
    manifest.save(run_dir)
    # deleting only after the manifest no longer calls them done: a kill in between leaves pending stages
    for stage in stages:
        stage_dir = run_dir / manifest.stages[stage].dir
        if stage_dir.exists():
            shutil.rmtree(stage_dir)
    remove_stale_temp(run_dir)


def _stage_inputs(manifest: Manifest, run_dir: Path, done_stages: list[str]) -> StageInputs:
    history = {stage: manifest.output_paths(stage, run_dir) for stage in done_stages}
    previous = history[done_stages[-1]] if done_stages else {}
    return StageInputs(models=dict(previous), history=history)


def _run_stage(
    cfg: ForgeConfig,
    manifest: Manifest,
    run_dir: Path,
    stage: str,
    function: StageFunction,
    inputs: StageInputs,
    console: Console,
) -> None:
    record = manifest.stages[stage]
    record.reset()
    record.status = RUNNING
    record.attempts += 1
    record.seed = derive_seed(cfg.seed, stage)
    record.started_at = utc_now()
    manifest.save(run_dir)

    stage_dir = run_dir / record.dir
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    start = time.perf_counter()
    try:
        ctx = StageContext.create(stage, cfg, inputs, stage_dir, console=console)
        result = function(ctx)
        outputs = _checked_outputs(stage, result, stage_dir, run_dir)
        atomic_write_json(stage_dir / METRICS_NAME, to_jsonable(result.metrics))
        trajectory = _record_trajectory(cfg, ctx, result, manifest, run_dir)
        fsync_tree(stage_dir)
    except ForgeError as exc:
        _mark_failed(manifest, run_dir, record, str(exc), start)
        log.error("stage %s failed: %s", stage, exc)
        raise ForgeError(f"stage {stage!r} failed: {exc} (fix it, then run again with --resume)") from None
    except KeyboardInterrupt:
        _mark_failed(manifest, run_dir, record, "interrupted", start)
        log.warning("stage %s interrupted", stage)
        raise
    except BaseException as exc:
        _mark_failed(manifest, run_dir, record, f"{type(exc).__name__}: {exc}", start)
        log.exception("stage %s crashed", stage)
        raise

    record.duration_s = round(time.perf_counter() - start, 3)
    record.finished_at = utc_now()
    record.outputs = outputs
    record.metrics = record_path(run_dir, stage_dir / METRICS_NAME)
    record.status = DONE
    manifest.save(run_dir)  # the commit point: only now is the stage finished
    shutil.rmtree(ctx.scratch_dir, ignore_errors=True)  # resume scratch of a finished stage is never read again
    summary = format_summary(headline_metrics(to_jsonable(result.metrics)))
    console.print(f"[green]done[/] {stage} in {format_duration(record.duration_s)}" + (f" — {escape(summary)}" if summary else ""))
    log.info("done %s in %s%s", stage, format_duration(record.duration_s), f" — {summary}" if summary else "")
    if trajectory is not None:
        _announce_trajectory(stage, trajectory, console)


def _record_trajectory(cfg: ForgeConfig, ctx: StageContext, result: StageResult, manifest: Manifest, run_dir: Path):
    """Measure the stage's outputs on the suite, compare with what it received, write `trajectory.json`."""
    from ..evaluation.trajectory import TRAJECTORY_FILE, compare, is_agent_path, measure_agent, read_trajectory

    if not cfg.report.trajectory:
        return None
    measure = lambda path: measure_agent(path, cfg.report, cfg.seed, device=ctx.device, dtype=ctx.dtype)  # noqa: E731
    outputs = {key: Path(path) if Path(path).is_absolute() else ctx.stage_dir / path for key, path in result.models.items()}
    leaving = {key: measure(path) for key, path in outputs.items() if is_agent_path(path)}
    if not leaving:
        return None
    entering = _entering_measurement(ctx, manifest, run_dir, measure, read_trajectory, is_agent_path)
    main = leaving.get("model") or max(leaving.values(), key=lambda m: m["suite"]["domain_mean"])
    trajectory = {
        "stage": ctx.name,
        "entering": entering,
        "leaving": leaving,
        "main_output": "model" if "model" in leaving else max(leaving, key=lambda k: leaving[k]["suite"]["domain_mean"]),
        **compare(entering["measurement"] if entering else None, main,
                  max_drop=cfg.report.max_undeclared_drop, trade_off=result.trade_off),
        "trade_off": result.trade_off,
    }
    atomic_write_json(ctx.stage_dir / TRAJECTORY_FILE, to_jsonable(trajectory))
    return trajectory


def _entering_measurement(ctx, manifest, run_dir, measure, read_trajectory, is_agent_path) -> dict | None:
    """The best-scoring model the stage received (its only one, usually), as the previous stage measured it."""
    if not ctx.inputs.models:
        return None
    done = [s for s, rec in manifest.stages.items() if rec.status == DONE and rec.name != ctx.name]
    previous = read_trajectory(run_dir / manifest.stages[done[-1]].dir) if done else None
    measured = {}
    for key, path in ctx.inputs.models.items():
        if previous and key in previous.get("leaving", {}):
            measured[key] = previous["leaving"][key]
        elif is_agent_path(Path(path)):
            measured[key] = measure(Path(path))
    if not measured:
        return None
    key = max(measured, key=lambda k: measured[k]["suite"]["domain_mean"])
    return {"input": key, "measurement": measured[key]}


def _announce_trajectory(stage: str, trajectory: dict, console: Console) -> None:
    change = trajectory.get("change")
    if change is None:
        return
    if trajectory.get("undeclared"):
        message = (f"stage {stage} left the agent {-change:.2f} points worse on the suite than it received it "
                   "(no trade-off declared)")
        console.print(f"[yellow]warning:[/] {escape(message)}")
        log.warning(message)
    elif trajectory.get("declared"):
        log.info("stage %s: suite change %+.2f points, declared trade-off: %s", stage, change, trajectory["declared"])
    else:
        log.info("stage %s: suite change %+.2f points", stage, change)


def _checked_outputs(stage: str, result: Any, stage_dir: Path, run_dir: Path) -> dict[str, str]:
    """Validate what a stage returned; a broken result is a bug in the stage, hence not a ForgeError."""
    if not isinstance(result, StageResult):
        raise TypeError(f"stage {stage!r} returned {type(result).__name__}, expected StageResult")
    if not isinstance(result.metrics, Mapping):
        raise TypeError(f"stage {stage!r} returned metrics of type {type(result.metrics).__name__}, expected a dict")
    outputs: dict[str, str] = {}
    for key, path in result.models.items():
        path = Path(path) if Path(path).is_absolute() else stage_dir / path
        inside = path.resolve().is_relative_to(run_dir)
        problem = check_output(path, deep=inside)
        if problem:
            raise RuntimeError(f"stage {stage!r} returned output {key!r} that is not complete: {problem}")
        outputs[key] = record_path(run_dir, path)
    return outputs


def _mark_failed(manifest: Manifest, run_dir: Path, record: StageRecord, error: str, start: float) -> None:
    record.status = FAILED
    record.error = error.splitlines()[0] if error else error
    record.duration_s = round(time.perf_counter() - start, 3)
    record.finished_at = utc_now()
    manifest.save(run_dir)


def to_jsonable(value: Any) -> Any:
    """Metrics as plain JSON types: NumPy/torch scalars and arrays, paths, tuples and sets are converted."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # numpy arrays/scalars and torch tensors
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metric value of type {type(value).__name__} cannot be written to JSON")


def headline_metrics(metrics: Mapping[str, Any], limit: int = 5) -> dict[str, Any]:
    """The few numbers shown in progress lines and `status`.

    A stage chooses them by putting a `"summary"` mapping in its metrics; otherwise the first top-level
    numbers are used.
    """
    summary = metrics.get("summary")
    if isinstance(summary, Mapping):
        return dict(list(summary.items())[:limit])
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return dict(list(numbers.items())[:limit])


# headline values a stage gives as a fraction of 1 (BitNet's retained accuracy): shown as percentages like the rest
FRACTION_KEYS = frozenset({"retained", "retained_fraction"})
_PERCENT_KEY = re.compile(r"(^|_)acc(uracy)?($|_)")  # accuracies are percentages everywhere


def format_summary(values: Mapping[str, Any]) -> str:
    """`k=v` pairs: floats with 4 significant digits, hit rates as percentages (`45.2%`), a missing value as "-"."""
    def show(k: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return str(v)
        if k in FRACTION_KEYS:
            return f"{100 * v:.4g}%"
        text = f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)
        return text + "%" if _PERCENT_KEY.search(k) else text

    return ", ".join(f"{k}={show(k, v)}" for k, v in values.items())


def format_duration(seconds: float | None) -> str:
    """`4.2s`, `3m07s`, `1h02m`."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
