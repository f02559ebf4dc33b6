"""Keeping a ternary (BitNet b1.58) model ternary through the curriculum, through the bitnet stage's helpers.

A model saved by the bitnet stage loads as an ordinary model whose latent weights sit in plain linears;
`restore_ternary` rebuilds its BitLinear layers so the RL updates reach the latent weights through the
straight-through estimator, and `ensure_ternary` re-asserts full quantization before saving and fails loudly
if anything is left full precision. A plain model passes through untouched.

Exercise: `pytest tests/stages/curriculum/test_stage.py -k ternary`.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ForgeError


def restore_ternary(model, source: Path) -> bool:
    """Rebuild BitLinear layers of a ternary checkpoint; False for a plain model."""
    from ..bitnet import is_ternary_checkpoint, restore_bitlinear

    if not is_ternary_checkpoint(model.config):
        return False
    return restore_bitlinear(model, source)


def ensure_ternary(model) -> None:
    from ..bitnet import is_ternary, keep_ternary

    keep_ternary(model)
    if not is_ternary(model):
        raise ForgeError("the curriculum stage left the model partly full precision; refusing to save it")


def ternary_report(model, entered_ternary: bool) -> dict:
    from ..bitnet import is_ternary

    return {"entered_ternary": entered_ternary, "ternary": bool(is_ternary(model)) if entered_ternary else False}
