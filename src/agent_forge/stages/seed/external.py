"""External profile of the seed stage: check that the three named models can be merged, and measure them."""

from __future__ import annotations

from pathlib import Path



from ...errors import ForgeError
from ...evaluation import evaluate
from ...evaluation.table import accuracy_table
from ...models import load_model
from ...models.compat import check_mergeable
from ...stage_contract import StageContext, StageResult
from .data import seed_eval_tasks


def validate_external(ctx: StageContext) -> StageResult:
    cfg, console = ctx.cfg, ctx.console
    sc = cfg.seed_stage
    sources = {name: Path(src).expanduser() for name, src in sc.models.items()}
    if sc.base:
        sources["base"] = Path(sc.base).expanduser()
    for name, src in sources.items():
        if not src.exists():
            raise ForgeError(f"seed model {name!r} not found: {src}")
    loaded = {name: load_model(str(src), device=ctx.device, dtype=ctx.dtype) for name, src in sources.items()}
    check_mergeable({n: m for n, (m, _) in loaded.items()}, {n: t for n, (_, t) in loaded.items()})
    tasks = seed_eval_tasks(sc, cfg.seed)
    reports = {name: evaluate(model, tok, tasks, batch_size=16) for name, (model, tok) in loaded.items()}
    console.print(accuracy_table(reports, title="seed (external): test accuracy (%)"))
    # the models stay where the user keeps them; later stages load them from there
    return StageResult(
        models={(name if name == "base" else f"specialist_{name}"): src for name, src in sources.items()},
        metrics={"profile": "external", "sources": {n: str(s) for n, s in sources.items()},
                 "eval": {n: r.to_dict() for n, r in reports.items()}},
    )
