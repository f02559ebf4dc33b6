"""The contract between the pipeline runner and every stage: what a stage receives and what it returns.

Each stage is a subpackage of `agent_forge.stages` exposing `run(ctx: StageContext) -> StageResult`. The runner
builds the context once per stage: the config, the finished stages' outputs, the stage directory and a scratch
directory that survives a kill, the device and dtype resolved once, the stage's own seed (already applied to
every RNG), a console and a logger. It lives outside `agent_forge.stages` so that a stage importing the
contract never imports another stage's package. The registry of stages is `agent_forge.registry.STAGES`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ForgeError

RESUME_DIR = ".resume"


@dataclass
class StageInputs:
    """What a stage receives: the previous stage's saved models, by key."""

    models: dict[str, Path] = field(default_factory=dict)
    # outputs of every finished stage so far, by stage name (for stages that need more than the previous one)
    history: dict[str, dict[str, Path]] = field(default_factory=dict)


@dataclass
class StageResult:
    """What a stage returns: its saved models, by key ("model" for the main output), and its metrics.

    `trade_off` declares, in one sentence, what the stage gives up for what (e.g. BitNet: accuracy for size).
    The runner flags a stage whose leaving model scores worse than its entering one by more than the config's
    `report.max_undeclared_drop`; with a trade-off declared the drop is reported as declared, with this reason.
    """

    models: dict[str, Path]
    metrics: dict[str, Any]
    trade_off: str | None = None


@dataclass
class StageContext:
    """Everything a stage needs from the runner; stages never recompute these themselves."""

    name: str
    cfg: Any  # ForgeConfig
    inputs: StageInputs
    stage_dir: Path
    scratch_dir: Path  # `<run>/.resume/<stage dir>`: kept across a kill, removed once the stage is done
    seed: int  # the stage's own seed (derived from cfg.seed and the stage name); RNGs are already seeded with it
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    console: Any  # rich Console
    log: logging.Logger

    @classmethod
    def create(cls, name: str, cfg, inputs: StageInputs, stage_dir: Path | str, console=None) -> "StageContext":
        """The context the runner hands a stage (tests use it to run a stage on its own)."""
        from rich.console import Console

        from .models import resolve_device, resolve_dtype
        from .utils import derive_seed, seed_everything

        stage_dir = Path(stage_dir)
        device = resolve_device(None if cfg.device == "auto" else cfg.device)
        dtype = resolve_dtype(None if cfg.dtype == "auto" else cfg.dtype, device)
        seed = derive_seed(cfg.seed, name)
        seed_everything(seed)
        return cls(
            name=name, cfg=cfg, inputs=inputs, stage_dir=stage_dir,
            scratch_dir=stage_dir.parent / RESUME_DIR / stage_dir.name, seed=seed, device=device, dtype=dtype,
            console=console or Console(), log=logging.getLogger(f"agent_forge.stages.{name}"),
        )

    def sub_seed(self, *labels: object) -> int:
        """An independent seed for one stream of this stage (e.g. "sleep", round 3)."""
        from .utils import derive_seed

        return derive_seed(self.seed, *labels)

    def input_model(self, key: str = "model") -> Path:
        """The one rule for a stage's input: the previous stage's output `key`, or its only output."""
        models = self.inputs.models
        if key in models:
            path = Path(models[key])
        elif key == "model" and len(models) == 1:
            path = Path(next(iter(models.values())))
        else:
            raise ForgeError(
                f"the {self.name} stage needs the previous stage's {key!r} model, but it produced "
                f"{sorted(models) or 'none'}"
            )
        if not path.exists():
            raise ForgeError(f"{self.name} input model not found: {path}")
        return path


StageFn = Callable[[StageContext], StageResult]
