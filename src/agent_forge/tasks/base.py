"""The shape every task shares: the `Task` record, the `Domain` interface, and the split rule.

A task's *instance key* is a canonical string naming the problem (for example `add:47,85`, with the operands
of a commutative operation sorted). A stable hash of `domain|level|key` puts every instance into exactly one
split (80% train, 10% val, 10% test), so the splits are disjoint by construction, whatever seed or sample size
a caller uses. Exercise it with:

    python -c "from agent_forge.tasks.base import split_of; print(split_of('arithmetic', 3, 'add:47,85'))"
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ForgeError

LEVELS = tuple(range(1, 11))
SPLITS = ("train", "val", "test")
# Percent of the instance space in each split; cumulative bounds on a 0..99 bucket.
SPLIT_PERCENT = {"train": 80, "val": 10, "test": 10}


@dataclass(frozen=True)
class Task:
    """One verifiable problem. `answer` is the canonical reference; `rationale` holds worked steps, if any.

    `meta` is informational (operands, hops, the instance key under `meta["key"]`, a `work` count of
    elementary steps); treat it as read-only.
    """

    task_id: str
    domain: str
    level: int
    prompt: str
    answer: str
    rationale: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __hash__(self) -> int:  # meta is a dict, so the generated hash would fail; the id names the instance
        return hash((self.task_id, self.prompt, self.answer))


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def split_of(domain: str, level: int, key: str) -> str:
    """The split an instance belongs to, decided by a stable hash of the instance alone."""
    bucket = int.from_bytes(_digest(f"{domain}|{level}|{key}"), "big") % 100
    if bucket < SPLIT_PERCENT["train"]:
        return "train"
    if bucket < SPLIT_PERCENT["train"] + SPLIT_PERCENT["val"]:
        return "val"
    return "test"


def task_id_for(domain: str, level: int, key: str) -> str:
    """Stable id: the same instance gets the same id in every run and on every machine."""
    return f"{domain}-{level}-{_digest(f'{domain}|{level}|{key}').hex()[:12]}"


def check_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise ForgeError(f"task level must be an integer from 1 to 10, got {level!r}")
    return level


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ForgeError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split


class Domain(ABC):
    """A family of procedurally generated tasks with ten levels of growing difficulty."""

    name: str = ""

    @abstractmethod
    def describe_level(self, level: int) -> str:
        """One line saying what items of this level look like and what makes them harder than the last."""

    @abstractmethod
    def draw(self, level: int, rng: random.Random, world_seed: int) -> tuple[str, Render]:
        """Draw one problem: its instance key, and a function that writes it out.

        Samplers reject most draws of the smaller splits by key alone, so the key must be cheap and the
        writing (prompt, answer, worked steps) is deferred to the returned function. Only `facts` uses
        `world_seed` (it picks the knowledge base).
        """

    def sample(self, level: int, rng: random.Random, world_seed: int = 0) -> Task:
        """Draw one task of `level` (from any split). `world_seed` picks the knowledge base of `facts`."""
        check_level(level)
        key, render = self.draw(level, rng, world_seed)
        return build_task(self.name, level, key, render)


# prompt, answer, rationale, meta
Rendered = tuple[str, str, "str | None", dict]
Render = Callable[[], Rendered]


def build_task(domain: str, level: int, key: str, render: Render) -> Task:
    """Write out a drawn instance as a Task; the instance key is kept in `meta["key"]`."""
    prompt, answer, rationale, meta = render()
    return Task(task_id_for(domain, level, key), domain, level, prompt, answer, rationale, {"key": key, **meta})


def split_of_task(task: Task) -> str:
    """The split a task's instance belongs to (the same rule the samplers use)."""
    return split_of(task.domain, task.level, task.meta["key"])
