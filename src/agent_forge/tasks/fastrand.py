"""Fast draws from a seeded `random.Random` for the samplers' hot path.

The samplers reject about nine draws in ten for the val and test splits, so drawing must be cheap; the
stdlib's `choice`/`randrange`/`sample` go through slower bit-level rejection. These use one `random()` call
per pick (uniform up to float rounding, deterministic for a given generator state). Exercise it with:

    python -c "import random; from agent_forge.tasks.fastrand import pick; print(pick(random.Random(0), 'abc'))"
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def below(rng: random.Random, n: int) -> int:
    """Uniform integer in [0, n)."""
    return int(rng.random() * n)


def between(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi], both ends included."""
    return lo + int(rng.random() * (hi - lo + 1))


def pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]


def distinct(rng: random.Random, items: Sequence[T], k: int) -> list[T]:
    """k different elements (for short sequences where k is much smaller than len(items))."""
    picked: list[T] = []
    while len(picked) < k:
        item = items[int(rng.random() * len(items))]
        if item not in picked:
            picked.append(item)
    return picked
