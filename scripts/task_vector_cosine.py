"""Cosine similarity between the seed stage's task vectors (specialist - base), overall and per module kind.

Task vectors that point in similar or opposite directions interfere when added (Ortiz-Jimenez et al. 2023,
Yadav et al. 2023): a merge that keeps one specialist's gain then moves the other's weights too. This prints,
for one or more runs, the pairwise cosine of the flattened task vectors, over every merged tensor and per module
kind (attention, MLP, embeddings, norms), and each vector's norm.

    python scripts/task_vector_cosine.py runs/tiny-seed0 [runs/tiny-seed1 ...]
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from pathlib import Path

import torch

from agent_forge.errors import ForgeError
from agent_forge.models import load_model

KINDS = {"attention": r"self_attn\.", "mlp": r"\.mlp\.", "embeddings": r"embed_tokens|lm_head", "norms": r"norm"}


def task_vectors(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    """specialist name -> {tensor name: specialist - base}, from the run's seed stage."""
    seed = run / "00-seed"
    if not (seed / "base").is_dir():
        raise ForgeError(f"{seed}/base not found: give a run whose seed stage made a base and specialists")
    base = load_model(seed / "base", device="cpu", dtype="float32")[0].state_dict()
    out = {}
    for folder in sorted(seed.glob("specialist_*")):
        spec = load_model(folder, device="cpu", dtype="float32")[0].state_dict()
        out[folder.name.removeprefix("specialist_")] = {k: spec[k] - base[k] for k in base if k in spec}
    return out


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], pattern: str | None = None) -> float | None:
    """Cosine of the two vectors restricted to tensors whose name matches `pattern`; None where either is zero
    there (a part the fine-tunes did not train)."""
    keys = [k for k in a if pattern is None or re.search(pattern, k)]
    if not keys:
        return None
    x = torch.cat([a[k].flatten() for k in keys]).double()
    y = torch.cat([b[k].flatten() for k in keys]).double()
    if x.norm() == 0 or y.norm() == 0:
        return None
    return float(x @ y / (x.norm() * y.norm()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        print("| run | pair | all | " + " | ".join(KINDS) + " |")
        print("|---|---|---|" + "---|" * len(KINDS))
        for run in args.runs:
            vectors = task_vectors(run)
            for a, b in itertools.combinations(vectors, 2):
                cells = [cosine(vectors[a], vectors[b])] + [cosine(vectors[a], vectors[b], p) for p in KINDS.values()]
                print(f"| {run.name} | {a}·{b} | " + " | ".join("untrained" if c is None else f"{c:+.3f}" for c in cells) + " |")
            norms = {n: float(torch.cat([t.flatten() for t in v.values()]).norm()) for n, v in vectors.items()}
            print(f"| {run.name} | norms | " + ", ".join(f"{n} {v:.2f}" for n, v in norms.items()) + " |" + " |" * len(KINDS))
    except ForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
