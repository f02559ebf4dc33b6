"""A replay buffer of verified (prompt, answer) pairs, grouped by a key such as (domain, level).

Stages that learn from their own verified outputs (STaR-style replay in the curriculum, sleep consolidation,
dream) keep them here. Sampling is balanced across keys so that a level with many stored successes does not
crowd out the older, smaller ones — the point of replay is to keep every earlier level alive. Each key keeps
its most recent `capacity` distinct items. The buffer serialises to plain JSON for resumable stages.

Exercise: `pytest tests/stages/curriculum/test_replay.py`.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Iterable

Pair = tuple[str, str]


class ReplayBuffer:
    """Verified pairs per key, deduplicated, with a per-key capacity (oldest dropped first)."""

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._items: dict[str, OrderedDict[Pair, None]] = {}

    def add(self, key: str, pairs: Iterable[Pair]) -> int:
        """Store pairs under `key`; returns how many were new."""
        bucket = self._items.setdefault(key, OrderedDict())
        added = 0
        for pair in pairs:
            pair = (str(pair[0]), str(pair[1]))
            if pair in bucket:
                bucket.move_to_end(pair)
                continue
            bucket[pair] = None
            added += 1
            if len(bucket) > self.capacity:
                bucket.popitem(last=False)
        return added

    def keys(self) -> list[str]:
        return [k for k, v in self._items.items() if v]

    def __len__(self) -> int:
        return sum(len(v) for v in self._items.values())

    def count(self, key: str) -> int:
        return len(self._items.get(key, ()))

    def sample(self, n: int, rng: random.Random, keys: Iterable[str] | None = None) -> list[Pair]:
        """`n` pairs drawn round-robin over the (chosen) keys in random order, with replacement inside a key."""
        pool = [k for k in (keys if keys is not None else self.keys()) if self._items.get(k)]
        if not pool or n <= 0:
            return []
        pool.sort()
        rng.shuffle(pool)
        out: list[Pair] = []
        while len(out) < n:
            for key in pool:
                if len(out) >= n:
                    break
                out.append(rng.choice(list(self._items[key])))
        return out

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "items": {k: [list(p) for p in v] for k, v in self._items.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "ReplayBuffer":
        buffer = cls(capacity=int(state.get("capacity", 256)))
        for key, pairs in state.get("items", {}).items():
            buffer.add(key, [tuple(p) for p in pairs])
        return buffer
