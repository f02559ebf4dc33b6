"""Deterministic task samplers: fixed-size lists, mixtures over domains and levels, and infinite streams.

Every (domain, level, split, seed) has one stream of tasks. It draws instances with a seeded RNG and keeps
only those whose instance key hashes into the requested split, so splits never share an instance. A stream
first yields distinct instances; small levels have small instance spaces (level 1 of `facts` has 180
questions, so its test split holds about 18), and once 200 draws in a row bring no new instance of the split
the stream accepts repeats, still drawn only from that split. `make_tasks(..., n)` is the first n tasks of
the stream, so a smaller n gives a prefix of a larger one.
`task_grid` is `make_tasks` over domains x levels.

The `facts` world is `KnowledgeBase.build(world_seed)`, and `world_seed` defaults to `seed`. A caller that
offsets the seed to get another stream of the same run (say `seed + 17` for a validation draw) must pass
`world_seed=<run seed>`, or its fact questions are about a different world. Exercise it with:

    python -c "from agent_forge.tasks import make_mixture; [print(t.domain, t.level, t.prompt, '->', t.answer) for t in make_mixture(['arithmetic', 'strings', 'logic', 'facts'], [1, 2, 3, 4], 'train', 8, 0)]"
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice

from ..errors import ForgeError
from .base import Task, build_task, check_level, check_split, split_of
from .knowledge import KnowledgeBase
from .registry import DOMAINS, get_domain

# Consecutive in-split draws without a new instance after which the split counts as exhausted.
EXHAUSTED_AFTER = 200
# Draws without a single in-split instance after which the split counts as empty.
EMPTY_AFTER = 5000

Levels = int | Sequence[int] | Mapping[str, Sequence[int]]


def task_stream(domain: str, level: int, split: str, seed: int, world_seed: int | None = None) -> Iterator[Task]:
    """Infinite stream of tasks of one domain, level and split: distinct instances first, then repeats."""
    source = get_domain(domain)  # checked here, not at the first next(), so bad requests fail at the call
    check_level(level)
    check_split(split)
    return _stream(source, level, split, seed, seed if world_seed is None else world_seed)


def _stream(source, level: int, split: str, seed: int, world: int) -> Iterator[Task]:
    domain = source.name
    rng = random.Random(f"tasks|{domain}|{level}|{split}|{seed}")
    seen: set[str] = set()
    stale = misses = 0
    repeating = False
    while True:
        key, render = source.draw(level, rng, world)
        if split_of(domain, level, key) != split:
            misses += 1
            if not seen and misses > EMPTY_AFTER:
                raise ForgeError(f"{domain} level {level} has no instances in the {split} split")
            continue
        if key in seen and not repeating:
            stale += 1
            if stale < EXHAUSTED_AFTER:
                continue
            repeating = True
        stale = 0
        seen.add(key)
        yield build_task(domain, level, key, render)


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ForgeError(f"number of tasks must be a non-negative integer, got {n!r}")
    return n


def make_tasks(domain: str, level: int, split: str, n: int, seed: int, world_seed: int | None = None) -> list[Task]:
    """The first `n` tasks of the (domain, level, split, seed) stream: deterministic, split-disjoint.

    `world_seed` (default: `seed`) picks the knowledge base that `facts` questions ask about.
    """
    return list(islice(task_stream(domain, level, split, seed, world_seed), _check_count(n)))


def task_grid(
    domains: str | Sequence[str], levels: Levels, split: str, n: int, seed: int, world_seed: int | None = None,
) -> list[Task]:
    """`make_tasks(domain, level, split, n, seed, world_seed)` for every domain and each of its levels, in order.

    `levels` is one level, a list shared by all domains, or a mapping from domain to its levels (a domain with
    an empty list contributes no tasks). This is the evaluation set of every stage and of `agent-forge eval`.
    """
    names = [domains] if isinstance(domains, str) else list(domains)
    return [
        task for name in names for level in _levels_of(name, levels)
        for task in make_tasks(name, level, split, n, seed, world_seed)
    ]


def _levels_of(name: str, levels: Levels) -> list[int]:
    """`name`'s levels in a `Levels` value (one level, a list for every domain, or a mapping per domain)."""
    if isinstance(levels, Mapping):
        if name not in levels:
            raise ForgeError(f"no levels given for domain {name!r}")
        levels = levels[name]
    return [levels] if isinstance(levels, int) else list(levels)


def _pairs(domains: str | Sequence[str], levels: Levels) -> list[tuple[str, int]]:
    names = [domains] if isinstance(domains, str) else list(domains)
    if not names:
        raise ForgeError("a task mixture needs at least one domain")
    for name in names:
        get_domain(name)
    pairs = []
    for name in names:
        chosen = _levels_of(name, levels)
        if not chosen:
            raise ForgeError(f"a task mixture needs at least one level for domain {name!r}")
        pairs += [(name, check_level(level)) for level in chosen]
    return pairs


def iter_tasks(
    domains: str | Sequence[str],
    levels: Levels,
    split: str,
    seed: int,
    weights: Mapping[str, float] | None = None,
    world_seed: int | None = None,
) -> Iterator[Task]:
    """Endless training stream mixing domains and levels.

    Each task's domain is drawn with probability proportional to `weights` (equal by default), then one of
    that domain's levels uniformly. `levels` is one level, a list shared by all domains, or a mapping from
    domain to its levels. `world_seed` (default: `seed`) picks the `facts` world.
    """
    check_split(split)
    pairs = _pairs(domains, levels)
    per_domain = {name: sum(1 for d, _ in pairs if d == name) for name, _ in pairs}
    weights = dict(weights or {})
    unknown = set(weights) - set(per_domain)
    if unknown:
        raise ForgeError(f"weights name domains not in the mixture: {sorted(unknown)}")
    if any(w < 0 for w in weights.values()):
        raise ForgeError("mixture weights must be non-negative")
    pair_weights = [weights.get(name, 1.0) / per_domain[name] for name, _ in pairs]
    if sum(pair_weights) <= 0:
        raise ForgeError("mixture weights must not all be zero")
    return _mixture(pairs, pair_weights, split, seed, world_seed)


def _mixture(pairs, pair_weights, split: str, seed: int, world_seed: int | None) -> Iterator[Task]:
    rng = random.Random(f"mixture|{split}|{seed}|{pairs}")
    streams: dict[tuple[str, int], Iterator[Task]] = {}
    while True:
        pair = rng.choices(pairs, pair_weights)[0]
        stream = streams.get(pair)
        if stream is None:
            stream = streams[pair] = task_stream(pair[0], pair[1], split, seed, world_seed)
        yield next(stream)


def make_mixture(
    domains: str | Sequence[str],
    levels: Levels,
    split: str,
    n: int,
    seed: int,
    weights: Mapping[str, float] | None = None,
    world_seed: int | None = None,
) -> list[Task]:
    """The first `n` tasks of `iter_tasks(domains, levels, split, seed, weights, world_seed)`."""
    return list(islice(iter_tasks(domains, levels, split, seed, weights, world_seed), _check_count(n)))


def knowledge_base_for(world_seed: int) -> KnowledgeBase:
    """The world the `facts` tasks of this world seed ask about (its statements are the facts to pretrain on)."""
    return KnowledgeBase.build(world_seed)


def corpus_text(
    domains: Iterable[str] | None = None,
    levels: Levels = (1, 2),
    n: int = 1000,
    seed: int = 0,
    split: str = "train",
    statements: bool = True,
    world_seed: int | None = None,
) -> list[str]:
    """Plain training texts: `prompt\\nanswer` for `n` mixed tasks, plus the facts world's statements.

    Statements are added when `facts` is among the domains and `statements` is true. The lead pipeline
    renders prompt/answer pairs with the tokenizer's prompt format instead; this is for quick corpora and
    for training a tokenizer.
    """
    names = list(DOMAINS) if domains is None else list(domains)
    world = seed if world_seed is None else world_seed
    texts = [f"{t.prompt}\n{t.answer}" for t in make_mixture(names, levels, split, n, seed, world_seed=world)]
    if statements and "facts" in names:
        texts += knowledge_base_for(world).statements()
    return texts
