"""Logic tasks: picking the largest/smallest digit, repeating patterns, sorting digits, tracing programs.

Levels 1-2 ask for the max/min of a few digits or the next item of a repeating letter pattern; levels 3-4
sort digits (the skill a base trained on levels 1-2 never saw); levels 5-10 trace ever longer straight-line
programs over single-digit variables (`a=3 b=5 c=1; a=b; swap b c; c?` -> `5`), adding swaps, max/min
assignments and conditionals. The queried variable is the one whose value depends on the most steps.
Exercise it with:

    python -c "import random; from agent_forge.tasks.logic import LogicDomain as D; print(D().sample(8, random.Random(0)))"
"""

from __future__ import annotations

import random
import string

from .base import Domain
from .fastrand import below, between, distinct, pick

VARIABLES = "abcde"


def _digits(rng: random.Random, n: int) -> list[int]:
    return [below(rng, 10) for _ in range(n)]


def _extreme(rng: random.Random, n: int):
    op = "max" if rng.random() < 0.5 else "min"
    digits = _digits(rng, n)
    # The order of the digits does not change the problem: the multiset is the instance.
    return f"{op}:{''.join(map(str, sorted(digits)))}", lambda: _render_extreme(op, digits)


def _render_extreme(op: str, digits: list[int]):
    better = max if op == "max" else min
    running, best = [], digits[0]
    for d in digits:
        best = better(best, d)
        running.append(str(best))
    meta = {"kind": op, "digits": digits, "work": len(digits)}
    return f"{op} {' '.join(map(str, digits))}", str(best), f"{op} so far: {' '.join(running)}", meta


def _pattern(rng: random.Random):
    period = pick(rng, (2, 3))
    unit = distinct(rng, string.ascii_lowercase, period)
    shown = between(rng, 2 * period, 2 * period + 2)
    prompt = "next: " + " ".join(unit[i % period] for i in range(shown))
    meta = {"kind": "pattern", "period": period, "work": period + 1}
    return prompt, lambda: (prompt, unit[shown % period], f"period {period}: {' '.join(unit)}", meta)


def _sort(rng: random.Random, n: int):
    digits = _digits(rng, n)
    return f"sort:{''.join(map(str, sorted(digits)))}", lambda: _render_sort(digits)


def _render_sort(digits: list[int]):
    counts = " ".join(f"{d}:{digits.count(d)}" for d in sorted(set(digits)))
    meta = {"kind": "sort", "digits": digits, "work": len(digits)}
    return f"sort {' '.join(map(str, digits))}", "".join(map(str, sorted(digits))), f"count {counts}", meta


# Program tracing -------------------------------------------------------------------------------------------
# Drawing a program is on the samplers' hot path (most draws of the small splits are rejected by key), so the
# draw only builds the text and the dependency depths; executing it for the answer and notes is the render.

def _trace(rng: random.Random, n_vars: int, n_steps: int, kinds: tuple[str, ...]):
    """Draw a program: (key = prompt, render, dependency depth of the queried variable)."""
    names = VARIABLES[:n_vars]
    start = [below(rng, 10) for _ in names]
    # depth[v]: how many statements the current value of v depends on (the chain a reader must follow)
    depth = dict.fromkeys(names, 1)
    program, texts, work = [], [], n_vars
    for _ in range(n_steps):
        kind = kinds[below(rng, len(kinds))]
        if kind == "set":
            v, c = names[below(rng, n_vars)], below(rng, 10)
            step, text = ("set", v, c), f"{v}={c}"
            depth[v] = 1
        elif kind == "copy":
            v, w = distinct(rng, names, 2)
            step, text = ("copy", v, w), f"{v}={w}"
            depth[v] = depth[w] + 1
        elif kind == "swap":
            v, w = distinct(rng, names, 2)
            step, text = ("swap", v, w), f"swap {v} {w}"
            depth[v], depth[w] = depth[w] + 1, depth[v] + 1
        elif kind == "minmax":
            op = "max" if rng.random() < 0.5 else "min"
            v, w, u = distinct(rng, names, 3)
            step, text = (op, v, w, u), f"{v}={op}({w},{u})"
            depth[v] = max(depth[w], depth[u]) + 1
        else:  # conditional copy or swap: "if a>b: c=d", "if a<b: swap c d"
            cmp = ">" if rng.random() < 0.5 else "<"
            x, y, v, w = distinct(rng, names, 4)
            guard = max(depth[x], depth[y])
            if rng.random() < 0.5:
                step, text = ("if", x, cmp, y, "copy", v, w), f"if {x}{cmp}{y}: {v}={w}"
                depth[v] = max(depth[v], depth[w], guard) + 1
            else:
                step, text = ("if", x, cmp, y, "swap", v, w), f"if {x}{cmp}{y}: swap {v} {w}"
                depth[v] = depth[w] = max(depth[v], depth[w], guard) + 1
        work += 2 if kind == "cond" else 1
        program.append(step)
        texts.append(text)
    deepest = max(depth.values())
    candidates = [v for v in names if depth[v] == deepest]
    query = candidates[below(rng, len(candidates))]
    init = " ".join(f"{v}={c}" for v, c in zip(names, start))
    prompt = f"{init}; {'; '.join(texts)}; {query}?"
    meta = {"kind": "trace", "steps": n_steps, "variables": n_vars, "depth": deepest, "work": work}
    return prompt, lambda: _run_trace(prompt, dict(zip(names, start)), program, query, meta), deepest


def _run_trace(prompt: str, values: dict[str, int], program: list[tuple], query: str, meta: dict):
    """Execute the program: the queried value, and one worked note per statement."""
    notes = []
    for step in program:
        kind = step[0]
        if kind == "set":
            _, v, c = step
            values[v] = c
            notes.append(f"{v}={c}")
        elif kind == "copy":
            _, v, w = step
            values[v] = values[w]
            notes.append(f"{v}={values[v]}")
        elif kind == "swap":
            _, v, w = step
            values[v], values[w] = values[w], values[v]
            notes.append(f"{v}={values[v]} {w}={values[w]}")
        elif kind in ("max", "min"):
            _, v, w, u = step
            values[v] = (max if kind == "max" else min)(values[w], values[u])
            notes.append(f"{v}={values[v]}")
        else:
            _, x, cmp, y, action, v, w = step
            test = f"{values[x]}{cmp}{values[y]}"
            if not (values[x] > values[y] if cmp == ">" else values[x] < values[y]):
                notes.append(f"{test} no")
            elif action == "copy":
                values[v] = values[w]
                notes.append(f"{test} yes {v}={values[v]}")
            else:
                values[v], values[w] = values[w], values[v]
                notes.append(f"{test} yes {v}={values[v]} {w}={values[w]}")
    return prompt, str(values[query]), "; ".join(notes), meta


class LogicDomain(Domain):
    name = "logic"

    # levels 5-10: (variables, steps (lo, hi), statement kinds)
    _TRACES = {
        5: (3, (5, 5), ("set", "copy")),
        6: (3, (6, 7), ("set", "copy", "swap")),
        # fresh constants ("set") keep copies and max/min from collapsing every variable to one value
        7: (4, (7, 8), ("set", "copy", "swap", "minmax")),
        8: (4, (8, 9), ("set", "copy", "swap", "minmax", "cond")),
        9: (4, (10, 11), ("set", "copy", "swap", "minmax", "cond")),
        10: (5, (12, 12), ("set", "copy", "swap", "minmax", "cond")),
    }

    def describe_level(self, level: int) -> str:
        if level == 1:
            return "level 1: max or min of 3 digits"
        if level == 2:
            return "level 2: max or min of 4 digits, or the next letter of a repeating pattern (period 2-3)"
        if level == 3:
            return "level 3: sort 4-5 digits ascending"
        if level == 4:
            return "level 4: sort 6-8 digits ascending"
        n_vars, (lo, hi), kinds = self._TRACES[level]
        steps = f"{lo}" if lo == hi else f"{lo}-{hi}"
        return f"level {level}: trace a {steps}-step program on {n_vars} digit variables ({', '.join(kinds)})"

    def draw(self, level, rng, world_seed):
        if level == 1:
            return _extreme(rng, 3)
        if level == 2:
            return _extreme(rng, 4) if rng.random() < 0.5 else _pattern(rng)
        if level == 3:
            return _sort(rng, between(rng, 4, 5))
        if level == 4:
            return _sort(rng, between(rng, 6, 8))
        n_vars, (lo, hi), kinds = self._TRACES[level]
        while True:
            drawn = _trace(rng, n_vars, between(rng, lo, hi), kinds)
            # A query answered by one constant assignment is lookup, not tracing; draw again.
            if drawn[2] >= 2:
                return drawn[:2]
