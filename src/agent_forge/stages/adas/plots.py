"""Plots of an ADAS search (PNG, matplotlib's non-interactive backend) for the run report.

`search.png`: best and median validation accuracy per generation with the best lower confidence bound;
`pareto.png`: every design's accuracy against its cost (tokens per answer), the Pareto front joined and the
chosen design marked, its settings written under the plot.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .archive import Archive, Entry  # noqa: E402


def plot_search(archive: Archive, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = list(range(len(archive.best_low)))
    ax.plot(xs, archive.best_mean, marker="o", label="best (mean)")
    ax.plot(xs, archive.median_mean, marker="s", label="median of the generation")
    ax.plot(xs, archive.best_low, marker="^", ls="--", label="best lower 95% bound (selection)")
    ax.set_xlabel("generation (0: hand-designed seeds)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_xticks(xs)
    ax.legend(fontsize=8)
    ax.set_title("ADAS search")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_pareto(archive: Archive, chosen: Entry, path: Path) -> None:
    scored = archive.scored()
    front = archive.pareto_front()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.scatter([e.tokens for e in scored], [e.fitness.mean for e in scored], s=18, color="0.6", label="designs")
    ax.plot([e.tokens for e in front], [e.fitness.mean for e in front], marker="o", color="C0", label="Pareto front")
    ax.scatter([chosen.tokens], [chosen.fitness.mean], s=90, marker="*", color="C3", zorder=5,
               label=f"chosen: {chosen.name}")
    ax.set_xscale("log")
    ax.set_xlabel("cost: tokens through the model per answer (log)")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("accuracy against cost")
    fig.text(0.01, 0.01, f"chosen design: {chosen.design.describe()}"[:150], fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
