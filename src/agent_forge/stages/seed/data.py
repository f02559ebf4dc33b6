"""Batches for the seed recipe: the pretraining mixture and each specialist's own-domain stream with replay.

Every stream asks about the same generated world (`world_seed` = the run's seed), whatever sampling seed it
uses, so that the facts the base reads in pretraining are the facts the `facts` tasks ask about.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from ...tasks import DOMAINS, iter_tasks, knowledge_base_for, task_grid

Pair = tuple[str, str]


def pretrain_batches(
    levels: Sequence[int], batch_size: int, seed: int, world_seed: int, statement_fraction: float
) -> Callable[[int], list[Pair]]:
    """Every domain at the easy levels, interleaved, plus a share of the world's fact statements as plain text."""
    stream = iter_tasks(list(DOMAINS), list(levels), "train", seed, world_seed=world_seed)
    statements = knowledge_base_for(world_seed).statements()
    rng = random.Random(seed)
    n_statements = round(batch_size * statement_fraction)

    def batch(step: int) -> list[Pair]:
        # a statement is an answer to the empty prompt: the loss covers the whole sentence
        pairs = [("", rng.choice(statements)) for _ in range(n_statements)]
        pairs += [_pair(next(stream)) for _ in range(batch_size - n_statements)]
        rng.shuffle(pairs)
        return pairs

    return batch


def specialist_batches(
    domain: str, levels: Sequence[int], replay: Callable[[int], list[Pair]], replay_fraction: float,
    batch_size: int, seed: int, world_seed: int,
) -> Callable[[int], list[Pair]]:
    """Own-domain items with a fixed share of replay from the pretraining mixture, against forgetting."""
    own = iter_tasks([domain], list(levels), "train", seed, world_seed=world_seed)
    n_replay = round(batch_size * replay_fraction)
    rng = random.Random(seed)

    def batch(step: int) -> list[Pair]:
        pairs = [_pair(next(own)) for _ in range(batch_size - n_replay)] + replay(step)[:n_replay]
        rng.shuffle(pairs)
        return pairs

    return batch


def _pair(task) -> Pair:
    return task.prompt, task.answer


def seed_eval_tasks(sc, seed: int) -> list:
    """Test-split tasks of every domain at the evaluation levels (never used for training); the specialists'
    domains first (a specialist trained on the user's own data has no suite domain)."""
    domains = [d for d in sc.specialists if d in DOMAINS] + [d for d in DOMAINS if d not in sc.specialists]
    return task_grid(domains, sc.eval_levels, "test", sc.eval_items_per_level, seed, world_seed=seed)
