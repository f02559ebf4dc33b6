"""String tasks: code-like transformations of lowercase words, written as nested function calls.

`reverse(kwt)` -> `twk`, `shift(kwt,1)` -> `lxu` (each letter moved on by one, z wraps to a),
`reverse(shift(kwt,1))` -> `uxl`. Levels 1-2 only reverse or double letters; levels 3-4 shift each letter
by one (the skill a base trained on levels 1-2 never saw); later levels add sort/dedup/drop and nest two to
four calls on longer words. Exercise it with:

    python -c "import random; from agent_forge.tasks.strings import StringsDomain as D; print(D().sample(6, random.Random(0)))"
"""

from __future__ import annotations

import random
import string
from typing import Callable

from .base import Domain
from .fastrand import between, distinct, pick

LETTERS = string.ascii_lowercase


def shift_word(word: str, k: int) -> str:
    return "".join(LETTERS[(LETTERS.index(ch) + k) % 26] for ch in word)


def dedup_word(word: str) -> str:
    """Keep the first occurrence of every letter, in order."""
    seen: set[str] = set()
    kept = []
    for ch in word:
        if ch not in seen:
            seen.add(ch)
            kept.append(ch)
    return "".join(kept)


# name -> (function of (word, argument), whether it takes an argument)
OPS: dict[str, tuple[Callable[[str, object], str], bool]] = {
    "reverse": (lambda w, _: w[::-1], False),
    "double": (lambda w, _: "".join(ch + ch for ch in w), False),
    "shift": (lambda w, k: shift_word(w, k), True),
    "sort": (lambda w, _: "".join(sorted(w)), False),
    "dedup": (lambda w, _: dedup_word(w), False),
    "drop": (lambda w, c: w.replace(c, ""), True),
}


def _uniform_word(rng: random.Random, length: int) -> str:
    return "".join(pick(rng, LETTERS) for _ in range(length))


def _pooled_word(rng: random.Random, length: int) -> str:
    """A word drawn from a few letters, so that dedup/drop/sort have repeats to act on."""
    pool = distinct(rng, LETTERS, max(3, (2 * length) // 3))
    return "".join(pick(rng, pool) for _ in range(length))


def _argument(op: str, word: str, rng: random.Random):
    if op == "shift":
        return between(rng, 1, 3)
    if op == "drop":
        # Mostly a letter the word contains, so the call changes something; sometimes one it does not.
        return pick(rng, word) if rng.random() < 0.85 else pick(rng, LETTERS)
    return None


def _call(op: str, inner: str, arg) -> str:
    return f"{op}({inner},{arg})" if OPS[op][1] else f"{op}({inner})"


def _render(word: str, ops: list[tuple[str, object]]):
    """Apply the calls innermost first: the nested-call prompt, the result, worked steps and meta."""
    expr, value, steps, work = word, word, [], 0
    for op, arg in ops:
        result = OPS[op][0](value, arg)
        steps.append(f"{op}: {result}")
        work += len(value)
        expr, value = _call(op, expr, arg), result
    if len(ops) > 1:
        rationale = "; ".join(steps)
    elif ops[0][0] == "shift":
        rationale = " ".join(f"{a}>{b}" for a, b in zip(word, value))
    else:
        rationale = None
    meta = {"ops": [op for op, _ in ops], "word": word, "length": len(word), "work": work}
    return expr, value, rationale, meta


class StringsDomain(Domain):
    name = "strings"

    # level -> (word lengths, number of nested calls, ops allowed)
    _SPECS = {
        1: ((3, 4), 1, ("reverse",)),
        2: ((4, 5), 1, ("reverse", "double")),
        3: ((4, 6), 1, ("shift",)),
        4: ((6, 8), 1, ("shift",)),
        5: ((7, 9), 1, ("shift", "sort", "dedup", "drop")),
        6: ((5, 7), 2, tuple(OPS)),
        7: ((8, 10), 2, tuple(OPS)),
        8: ((6, 8), 3, tuple(OPS)),
        9: ((8, 10), 3, tuple(OPS)),
        10: ((9, 11), 4, tuple(OPS)),
    }

    def describe_level(self, level: int) -> str:
        (lo, hi), depth, ops = self._SPECS[level]
        calls = "one call" if depth == 1 else f"{depth} nested calls"
        shift_note = " (shift by 1)" if level in (3, 4) else ""
        return f"level {level}: {calls} of {'/'.join(ops)}{shift_note} on a {lo}-{hi} letter word"

    def draw(self, level, rng, world_seed):
        (lo, hi), depth, allowed = self._SPECS[level]
        length = between(rng, lo, hi)
        word = _uniform_word(rng, length) if level <= 4 else _pooled_word(rng, length)
        ops = self._draw_ops(level, word, depth, allowed, rng)
        expr = word
        for op, arg in ops:
            expr = _call(op, expr, arg)
        return expr, lambda: _render(word, ops)

    @staticmethod
    def _draw_ops(level, word, depth, allowed, rng) -> list[tuple[str, object]]:
        while True:
            ops: list[tuple[str, object]] = []
            value = word
            for _ in range(depth):
                # At most one double per chain keeps level-10 answers within ~40 characters.
                # A call never repeats the one inside it (dedup(dedup(w)) and reverse(reverse(w)) are no-ops).
                choices = [
                    op for op in allowed
                    if not (op == "double" and any(o == "double" for o, _ in ops)) and not (ops and ops[-1][0] == op)
                ]
                op = pick(rng, choices)
                arg = 1 if level in (3, 4) else _argument(op, value, rng)
                ops.append((op, arg))
                value = OPS[op][0](value, arg)
                if not value:
                    break
            if value:  # a drop that empties the word makes a degenerate item; draw the calls again
                return ops
