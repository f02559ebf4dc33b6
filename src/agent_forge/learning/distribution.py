"""The logged task distribution: which (domain, level) each recognised prompt came from, and fresh held-out
tasks of the same distribution.

`interactions.recognise` knows a logged prompt's domain and reference but not its level. `place(task)` finds it
by the prompt's *shape*: digits become `9`, words become `a<length>` except the domain's grammar words (operation names,
relations, question words: the words common in generated prompts), and the answer's shape joins it
(`999+999 (digits reversed)=>999`, `reverse(a4)=>a4`). For every level of the domain, 400 generated train tasks give the frequency
of each shape; the task goes to the level where its shape is most frequent (the likeliest level; ties go to
the lower level), and a shape no level produces falls back to the coarse shape (every word `a<length>`), then to no
level (the task is still learned from, but not part of the held-out distribution).

`heldout_tasks(cells, per_cell, seed, exclude)` draws fresh tasks of the test split for every cell with at least
`min_share` of the placed tasks (a prompt the log has seen is never held out), and `heldout_accuracy` weights
each cell's accuracy by its share of the log, so the number is the accuracy on the logged distribution.

Exercise: `pytest -m slow tests/learning/test_deployment.py`.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

from ..tasks import LEVELS, Task, make_tasks

SHAPE_SAMPLES = 400
_SEED = 104729  # fixed: the shape tables are the same in every run
_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=None)
def _grammar_words(domain: str, world: int | None) -> frozenset[str]:
    """Words in at least 10% of a level's generated prompts: the domain's grammar, not its random content."""
    words: set[str] = set()
    for level in LEVELS:
        tasks = _samples(domain, level, world)
        counts = Counter(w for t in tasks for w in set(_WORD.findall(t.prompt)))
        words |= {w for w, n in counts.items() if n >= 0.1 * len(tasks) and len(w) > 1}
    return frozenset(words)


@lru_cache(maxsize=None)
def _samples(domain: str, level: int, world: int | None) -> tuple[Task, ...]:
    return tuple(make_tasks(domain, level, "train", SHAPE_SAMPLES, _SEED,
                            world_seed=world if domain == "facts" else None))


def shape(text: str, keep: frozenset[str] = frozenset()) -> str:
    text = re.sub(r"[0-9]", "9", text)
    # a content word keeps its length (levels differ by word length), capped so long words do not split hairs
    return _WORD.sub(lambda m: m.group(0) if m.group(0) in keep else f"a{min(len(m.group(0)), 12)}", text)


def _signature(prompt: str, answer: str, keep: frozenset[str]) -> str:
    return f"{shape(prompt, keep)}=>{shape(answer)}"


@lru_cache(maxsize=None)
def _tables(domain: str, world: int | None) -> tuple[dict[int, Counter], dict[int, Counter]]:
    keep = _grammar_words(domain, world)
    fine = {lv: Counter(_signature(t.prompt, t.answer, keep) for t in _samples(domain, lv, world)) for lv in LEVELS}
    coarse = {lv: Counter(_signature(t.prompt, t.answer, frozenset()) for t in _samples(domain, lv, world))
              for lv in LEVELS}
    return fine, coarse


def place(task: Task, world: int | None = None) -> int:
    """The likeliest level of a recognised task (0: no level produces its shape)."""
    fine, coarse = _tables(task.domain, world)
    keep = _grammar_words(task.domain, world)
    for tables, words in ((fine, keep), (coarse, frozenset())):
        sig = _signature(task.prompt, task.answer, words)
        best = max(LEVELS, key=lambda lv: (tables[lv][sig], -lv))
        if tables[best][sig]:
            return best
    return 0


def logged_cells(tasks: Iterable[Task], world: int | None = None) -> dict[str, int]:
    """{"domain:level": number of logged tasks placed there}."""
    counts: Counter = Counter()
    for task in tasks:
        level = place(task, world)
        if level:
            counts[f"{task.domain}:{level}"] += 1
    return dict(sorted(counts.items()))


def heldout_cells(cells: dict[str, int], min_share: float) -> dict[str, float]:
    """{"domain:level": share} of the cells the held-out set covers (shares renormalised over them)."""
    total = sum(cells.values())
    kept = {k: n for k, n in cells.items() if total and n / total >= min_share}
    kept_total = sum(kept.values())
    return {k: n / kept_total for k, n in kept.items()}


def heldout_tasks(cells: dict[str, float], per_cell: int, seed: int, exclude: Iterable[str] = (),
                  world: int | None = None) -> list[Task]:
    """Fresh test-split tasks of every cell, none with a prompt in `exclude` (the logged prompts)."""
    seen = set(exclude)
    out: list[Task] = []
    for key in sorted(cells):
        domain, _, level = key.partition(":")
        drawn = make_tasks(domain, int(level), "test", per_cell + 20, seed,
                           world_seed=world if domain == "facts" else None)
        out += [t for t in drawn if t.prompt not in seen][:per_cell]
    return out


def heldout_accuracy(tasks: Sequence[Task], scores: Sequence[float], cells: dict[str, float]) -> tuple[float, dict]:
    """(accuracy in percent weighted by the cells' shares, accuracy per cell)."""
    per: dict[str, list[float]] = {}
    for task, value in zip(tasks, scores, strict=True):
        per.setdefault(f"{task.domain}:{task.level}", []).append(float(value))
    by_cell = {k: 100.0 * sum(v) / len(v) for k, v in per.items()}
    weight = sum(cells.get(k, 0.0) for k in by_cell)
    accuracy = sum(cells.get(k, 0.0) * a for k, a in by_cell.items()) / weight if weight else 0.0
    return round(accuracy, 2), {k: round(a, 2) for k, a in sorted(by_cell.items())}
