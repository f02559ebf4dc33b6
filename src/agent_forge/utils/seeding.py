"""Reproducibility: one call seeds Python, NumPy and torch; another sets torch's CPU thread count.

The pipeline seeds every stage with `derive_seed(cfg.seed, stage)` right before it runs, so a stage computes
the same thing whether the run went straight through or was resumed after a kill.

Exercise: `python -c "from agent_forge.utils import seed_everything; seed_everything(0)"`.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(base: int, *labels: object) -> int:
    """A seed in [0, 2**31) that depends on `base` and the labels, stable across processes and Python versions.

    (Python's `hash()` of a string is randomised per process, so it cannot be used here.)
    """
    text = ":".join([str(base), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed `random`, NumPy's global generator and torch (CPU and every CUDA device)."""
    import torch  # heavy: imported here so that light commands (status) never pay for it

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(threads: int) -> None:
    """Use `threads` torch CPU threads; 0 keeps torch's default (one per core)."""
    if threads < 0:
        raise ValueError("threads must be >= 0")
    if threads:
        import torch

        torch.set_num_threads(threads)
