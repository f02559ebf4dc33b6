"""The half-baking plot, written into the stage directory (PNG, matplotlib's non-interactive backend).

`strength.png`: for every bake, the held-out KL to the prompted teacher and the target score without the
prompt against the fraction of the bake's steps (a bake stopped early is a continuous prompt strength).
Exercise: `pytest tests/stages/baking/test_baking_stage.py`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_strength(bakes: list[dict], path: Path) -> None:
    fig, (kl_ax, score_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for record in bakes:
        curve = record.get("strength_curve") or []
        if not curve:
            continue
        xs = [p["fraction"] for p in curve]
        style = "-" if record.get("kept") else ":"
        label = f"{record['name']} r{record['round']}" + ("" if record.get("kept") else " (rejected)")
        kl_ax.plot(xs, [p["kl"] for p in curve], style, marker="o", ms=3, label=label)
        score_ax.plot(xs, [p["target"] for p in curve], style, marker="o", ms=3, label=label)
    kl_ax.set_yscale("log")
    kl_ax.set_xlabel("prompt strength (fraction of the bake's steps)")
    kl_ax.set_ylabel("held-out KL to the prompted model (nats/token)")
    score_ax.set_xlabel("prompt strength (fraction of the bake's steps)")
    score_ax.set_ylabel("target score without the prompt (%)")
    score_ax.legend(fontsize=6, loc="best")
    fig.suptitle("half-baking: prompt strength curves (dotted: rejected by validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
