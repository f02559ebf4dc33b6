"""Stage 1.3 BitNet b1.58 (Ma et al. 2024): ternary weights before heavy training, kept ternary afterwards.

The format itself (BitLinear, quantizers, marker, packed export, kernel) lives in
`agent_forge.models.formats.ternary`, so that every later stage, the CLI and the server load a ternary agent
without importing this stage. This package holds the conversion with lambda warm-up and distillation
(`qat.py`) and the stage (`stage.py`).

Run the stage: ``agent-forge run`` with ``bitnet`` in ``stages``; see README.md in this folder for results.
"""

from .qat import convert_with_distillation, naive_ternary, quant_strength


def run(ctx):
    """The stage entry point (imported lazily by the pipeline through the registry)."""
    from .stage import run as run_stage

    return run_stage(ctx)


__all__ = ["convert_with_distillation", "naive_ternary", "quant_strength", "run"]
