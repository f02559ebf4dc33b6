"""Plot an evolution's history: best and median fitness per generation, and population diversity.

Exercise: `python -m pytest tests/stages/evomerge/test_engine.py -k plot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def plot_history(history: Sequence[dict], path: Path | str, title: str = "EvoMerge") -> Path:
    """Write a PNG with two panels: fitness (best, median, best so far) and diversity, by generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [h["generation"] for h in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(gens, [h["best"] for h in history], marker="o", label="best of generation")
    top.plot(gens, [h["median"] for h in history], marker=".", label="median")
    top.plot(gens, [h["best_so_far"] for h in history], linestyle="--", label="best so far")
    top.set_ylabel("validation fitness")
    top.set_title(title)
    top.legend(loc="lower right")
    top.grid(alpha=0.3)
    bottom.plot(gens, [h["diversity"] for h in history], marker="o", color="tab:green")
    bottom.set_ylabel("diversity (mean recipe distance)")
    bottom.set_xlabel("generation")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
