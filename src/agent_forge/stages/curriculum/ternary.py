"""Keeping a ternary (BitNet b1.58) model ternary through the curriculum.

`load_agent` already rebuilt the BitLinear layers of a ternary input, so the RL updates reach the latent
weights through the straight-through estimator; `ensure_ternary` re-asserts full quantization before saving
and fails loudly if anything is left full precision. A plain model passes through untouched.

Exercise: `pytest tests/stages/curriculum/test_stage.py -k ternary`.
"""

from __future__ import annotations

from ...errors import ForgeError
from ...models.formats.ternary import is_ternary, keep_ternary


def ensure_ternary(model) -> None:
    keep_ternary(model)
    if not is_ternary(model):
        raise ForgeError("the curriculum stage left the model partly full precision; refusing to save it")


def ternary_report(model, entered_ternary: bool) -> dict:
    return {"entered_ternary": entered_ternary, "ternary": bool(is_ternary(model)) if entered_ternary else False}
