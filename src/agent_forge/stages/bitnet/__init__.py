"""Stage 1.3 BitNet b1.58 (Ma et al. 2024): ternary weights before heavy training, kept ternary afterwards.

The public API other stages use (they never reach into the modules below it):

* ``restore_bitlinear(model, path) -> bool`` right after ``load_model(path)``: rebuilds the BitLinear layers of a
  saved ternary model so training continues on its latent weights (False and no change for other models);
* ``is_ternary(model)``, ``keep_ternary(model)`` (after adding layers, before saving), ``set_quant_strength``;
* ``convert_to_bitlinear`` / ``convert_with_distillation`` to make a model ternary;
* ``export_packed`` / ``load_packed`` for the 2-bit packed export and CPU inference from it.

Run the stage: ``agent-forge run`` with ``bitnet`` in ``stages``; see README.md in this folder for results.
"""

from .convert import (
    bitlinear_layers,
    convert_to_bitlinear,
    is_ternary,
    is_ternary_checkpoint,
    keep_ternary,
    restore_bitlinear,
    set_quant_strength,
)
from .layer import BitLinear
from .packed import PackedBitLinear, export_packed, load_packed, packed_size_report
from .qat import convert_with_distillation, naive_ternary, quant_strength


def run(cfg, inputs, stage_dir, console=None):
    """The stage entry point (imported lazily by the pipeline through ``STAGES``)."""
    from .stage import run as run_stage

    return run_stage(cfg, inputs, stage_dir, console=console)


__all__ = [
    "BitLinear", "PackedBitLinear", "bitlinear_layers", "convert_to_bitlinear", "convert_with_distillation",
    "export_packed", "is_ternary", "is_ternary_checkpoint", "keep_ternary", "load_packed", "naive_ternary",
    "packed_size_report", "quant_strength", "restore_bitlinear", "run", "set_quant_strength",
]
