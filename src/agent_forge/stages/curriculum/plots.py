"""Plots of a curriculum run, written into the stage directory (PNG, matplotlib's non-interactive backend).

`cycles.png`: success rate, reward, KL and difficulty per cycle, with level boundaries; `levels.png`: test
accuracy by domain and level before and after the stage; `calibration.png`: reliability diagrams of the
self-confidence before and after. Exercise: `pytest tests/stages/curriculum/test_stage.py`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .calibration import reliability  # noqa: E402


def plot_cycles(history: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    xs = list(range(len(history)))
    for ax, key in zip(axes, ("success", "reward", "kl", "difficulty")):
        ax.plot(xs, [h.get(key) or 0.0 for h in history], lw=1.2)
        ax.set_ylabel(key)
        for i in range(1, len(history)):
            if history[i]["level"] != history[i - 1]["level"]:
                ax.axvline(i, color="gray", ls=":", lw=0.8)
    axes[-1].set_xlabel("cycle")
    fig.suptitle("curriculum cycles (dotted: level boundaries)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_levels(before: dict, after: dict, path: Path) -> None:
    """`before`/`after`: {domain: {level: accuracy %}}."""
    domains = sorted(set(before) | set(after))
    fig, axes = plt.subplots(1, len(domains), figsize=(4 * len(domains), 3.2), squeeze=False)
    for ax, domain in zip(axes[0], domains):
        for label, table, style in (("entering", before, "o--"), ("after", after, "s-")):
            levels = sorted(int(k) for k in table.get(domain, {}))
            ax.plot(levels, [table[domain][str(k)] if str(k) in table[domain] else table[domain][k] for k in levels],
                    style, label=label)
        ax.set_title(domain)
        ax.set_xlabel("level")
        ax.set_ylim(-5, 105)
    axes[0][0].set_ylabel("test accuracy %")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_calibration(before: dict, after: dict, path: Path, bins: int = 10) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8)
    for label, data, style in (("before", before, "o--"), ("after", after, "s-")):
        rows = reliability(data["confidence"], data["correct"], bins)
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], style,
                label=f"{label} (ECE {data['ece']:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
