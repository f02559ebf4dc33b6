"""Small real stages for pipeline tests, and a script entry point to run them in a killable subprocess.

The stages write real model folders (a `model.safetensors` of float32 weights, then a `config.json` holding
the weights' SHA-256) *non-atomically and in chunks*, like a careless stage would, so that a SIGKILL really
leaves a half-written model on disk. Every stage loads its inputs through `load_toy_model`, which refuses a
model whose weights do not match the checksum and records the violation in `$TOY_EVENTS_DIR/VIOLATION`: the
tests assert that file never appears, i.e. the runner never hands a half-written model to a stage.

Environment: `TOY_EVENTS_DIR` — touch `<stage>.start`, `<stage>.<key>.chunk<i>`, `<stage>.returning` there as
the stage progresses; `TOY_PAUSE_AT` — the one event at which to stop and wait (the test kills the process
there, so the kill lands at exactly that point).

Script: `python tests/pipeline/pipeline_toy_stages.py RUN_ROOT NAME [--resume] [--until STAGE]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

from agent_forge.config import ForgeConfig
from agent_forge.errors import ForgeError
from agent_forge.stages import StageContext, StageResult

TOY_STAGE_NAMES = ["seed", "evomerge", "quietstar"]
CHUNKS = 4


def _event(name: str) -> None:
    events = os.environ.get("TOY_EVENTS_DIR")
    if events:
        Path(events, name).touch()
        if os.environ.get("TOY_PAUSE_AT") == name:
            time.sleep(60)  # parked here until the test kills the process


def write_toy_model(folder: Path, weights: dict[str, np.ndarray], event_prefix: str) -> None:
    """Write weights then config.json in place (deliberately not atomic), in chunks with progress events."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = save(weights)
    step = -(-len(blob) // CHUNKS)
    with open(folder / "model.safetensors", "wb") as handle:
        for i in range(CHUNKS):
            handle.write(blob[i * step:(i + 1) * step])
            handle.flush()
            _event(f"{event_prefix}.chunk{i}")
    config = {"sha256": hashlib.sha256(blob).hexdigest(), "shapes": {k: list(v.shape) for k, v in weights.items()}}
    (folder / "config.json").write_text(json.dumps(config))


def load_toy_model(folder: Path) -> dict[str, np.ndarray]:
    """Load a toy model, refusing (and recording) one whose weights are incomplete."""
    try:
        expected = json.loads((folder / "config.json").read_text())["sha256"]
        blob = (folder / "model.safetensors").read_bytes()
        complete = hashlib.sha256(blob).hexdigest() == expected
    except (OSError, ValueError, KeyError):
        complete = False
    if not complete:
        events = os.environ.get("TOY_EVENTS_DIR")
        if events:
            Path(events, "VIOLATION").write_text(str(folder))
        raise AssertionError(f"half-written model handed to a stage: {folder}")
    return load_file(folder / "model.safetensors")


def seed_stage(ctx: StageContext) -> StageResult:
    inputs, stage_dir = ctx.inputs, ctx.stage_dir
    """Two models from the globally seeded NumPy generator (tests that the runner seeds each stage)."""
    _event("seed.start")
    assert not inputs.models and not inputs.history
    outputs = {}
    for key in ("base", "specialist"):
        weights = {"w": np.random.standard_normal((32, 32)).astype(np.float32)}
        write_toy_model(stage_dir / key, weights, f"seed.{key}")
        outputs[key] = stage_dir / key
    _event("seed.returning")
    return StageResult(models=outputs, metrics={"summary": {"models": 2}, "norm": float(np.linalg.norm(weights["w"]))})


def merge_stage(ctx: StageContext) -> StageResult:
    inputs, stage_dir = ctx.inputs, ctx.stage_dir
    """Average the previous stage's models plus seeded noise."""
    _event("evomerge.start")
    assert set(inputs.models) == {"base", "specialist"}
    loaded = [load_toy_model(path) for path in inputs.models.values()]
    merged = {"w": (sum(m["w"] for m in loaded) / len(loaded) + 0.01 * np.random.standard_normal((32, 32))).astype(np.float32)}
    write_toy_model(stage_dir / "model", merged, "evomerge.model")
    _event("evomerge.returning")
    return StageResult(models={"model": stage_dir / "model"}, metrics={"mean": np.float32(merged["w"].mean())})


def think_stage(ctx: StageContext) -> StageResult:
    inputs, stage_dir = ctx.inputs, ctx.stage_dir
    """Uses the previous model and, through the history, the seed stage's base."""
    _event("quietstar.start")
    assert set(inputs.history) == {"seed", "evomerge"}
    model = load_toy_model(inputs.models["model"])
    base = load_toy_model(inputs.history["seed"]["base"])
    weights = {"w": (model["w"] - 0.5 * base["w"]).astype(np.float32)}
    write_toy_model(stage_dir / "model", weights, "quietstar.model")
    _event("quietstar.returning")
    return StageResult(models={"model": stage_dir / "model"}, metrics={"delta": float(np.abs(weights["w"]).mean())})


def failing_stage(ctx: StageContext) -> StageResult:
    stage_dir = ctx.stage_dir
    """A stage that finds its input unusable, as a user error."""
    (stage_dir / "partial.txt").write_text("started")
    raise ForgeError("the three models have different vocabularies")


TOY_STAGES = {"seed": seed_stage, "evomerge": merge_stage, "quietstar": think_stage}


def toy_config(run_root: Path | str, name: str, **fields) -> ForgeConfig:
    """A config whose stages are the toy stages."""
    return ForgeConfig(name=name, run_root=str(run_root), stages=list(TOY_STAGE_NAMES), **fields)


def main(argv: list[str]) -> int:
    from rich.console import Console

    from agent_forge.pipeline import run_pipeline

    run_root, name, *flags = argv
    until = flags[flags.index("--until") + 1] if "--until" in flags else None
    run_pipeline(
        toy_config(run_root, name),
        resume="--resume" in flags,
        until=until,
        stage_fns=TOY_STAGES,
        console=Console(stderr=True),
    )
    return 0


if __name__ == "__main__":
    # a shell without job control starts background jobs with SIGINT ignored, and Python keeps it ignored;
    # the Ctrl-C test needs the interpreter's KeyboardInterrupt however the test run itself was launched
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main(sys.argv[1:]))
