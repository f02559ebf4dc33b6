"""Stage 0 (seed): the three specialised base models that merging starts from.

Tiny profile: pretrain one small shared base on a mixture of every domain's easy levels, then fine-tune three
specialists from it (own-domain hard levels plus replay of the mixture), so that they share ancestry the way
real fine-tunes of one base do and carry small, distinct task vectors. External profile: validate the three
models the user names (same family, shapes and vocabulary). Finetune profile: three LoRA specialists made from
one model the user brings, on task domains or the user's JSONL data (`finetune.py`). Run: `agent-forge run --until seed`.
"""

from __future__ import annotations

from ...stage_contract import StageContext, StageResult
from .external import validate_external
from .finetune import build_finetune_seed
from .tiny import build_tiny_seed


def run(ctx: StageContext) -> StageResult:
    if ctx.cfg.seed_stage.profile == "external":
        return validate_external(ctx)
    if ctx.cfg.seed_stage.profile == "finetune":
        return build_finetune_seed(ctx)
    return build_tiny_seed(ctx)
