"""Batches for the seed recipe: the pretraining mixture and each specialist's own-domain stream with replay."""

from __future__ import annotations

import random
from typing import Callable, Sequence

from ...tasks import DOMAINS, iter_tasks

Pair = tuple[str, str]


def pretrain_batches(levels: Sequence[int], batch_size: int, seed: int) -> Callable[[int], list[Pair]]:
    """Every domain at the easy levels, interleaved, from the train split."""
    stream = iter_tasks(list(DOMAINS), list(levels), "train", seed)
    return lambda step: [_pair(next(stream)) for _ in range(batch_size)]


def specialist_batches(
    domain: str, levels: Sequence[int], replay_levels: Sequence[int], replay_fraction: float, batch_size: int, seed: int
) -> Callable[[int], list[Pair]]:
    """Own-domain items with a fixed share of replay from the pretraining mixture, against forgetting."""
    own = iter_tasks([domain], list(levels), "train", seed)
    replay = iter_tasks(list(DOMAINS), list(replay_levels), "train", seed + 7919)
    n_replay = round(batch_size * replay_fraction)
    rng = random.Random(seed)

    def batch(step: int) -> list[Pair]:
        pairs = [_pair(next(own)) for _ in range(batch_size - n_replay)] + [_pair(next(replay)) for _ in range(n_replay)]
        rng.shuffle(pairs)
        return pairs

    return batch


def _pair(task) -> Pair:
    return task.prompt, task.answer


