"""Stage 1.1 (EvoMerge): merge the seed specialists into one foundation model by evolving merge recipes.

Parameter-space methods (linear, SLERP, task arithmetic, TIES, DARE-TIES, DARE-linear; `methods/`) and
layer-space methods (Frankenmerge, DFS; `frankenmerge.py`, `dfs.py`) combine into recipes (`recipe.py`,
`space.py`) that a genetic algorithm (`ga.py`) or CMA-ES (`cmaes.py`) evolves (`engine.py`) against
validation accuracy (`fitness.py`), locally or on Ray (`population.py`), with a lineage file and plots.
Run: `agent-forge run --config tiny` or `python -m pytest tests/stages/evomerge`.
"""

from __future__ import annotations


def run(ctx):
    """The stage entry point (see `stage.run`); imported lazily so `import agent_forge.stages.evomerge` stays light."""
    from .stage import run as _run

    return _run(ctx)
