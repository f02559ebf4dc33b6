"""The ADAS archive: every evaluated design with its validation fitness, cost and lineage.

Fitness is validation accuracy with a percentile-bootstrap interval over the items; selection ranks by the
interval's lower bound (a design that wins on a few lucky items does not crowd out a reliably good one), ties
by cost. Cost is what answering took: tokens through the model per answer (every pass, thoughts and votes
included) and wall milliseconds per answer; a design certain to be over the cost budget is stopped early and
has no fitness. The archive keeps the accuracy/cost Pareto front (maximal mean accuracy, minimal tokens per
answer) and is written after every generation, so the search resumes there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...evaluation.intervals import Interval
from ...models.formats.design import AgentDesign
from ...utils import atomic_write_text


@dataclass
class Entry:
    design: AgentDesign
    generation: int
    origin: str  # seed | mutation | crossover | meta-agent
    parents: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # per validation item, in the fixed item order
    fitness: Interval | None = None
    tokens: float = 0.0  # per answer
    ms: float = 0.0  # per answer
    error: str | None = None  # a generated block that failed in the sandbox
    over_budget: bool = False  # costs more tokens per answer than the search allows the chosen design
    stopped_early: bool = False  # scoring stopped once it had spent the budget of every item (no fitness)

    @property
    def name(self) -> str:
        return self.design.name

    def rank_key(self) -> tuple:
        """Higher is better: lower confidence bound, then mean, then cheaper."""
        if self.fitness is None:
            return (float("-inf"), float("-inf"), 0.0)
        return (round(self.fitness.low, 9), round(self.fitness.mean, 9), -self.tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"design": self.design.to_dict(), "generation": self.generation, "origin": self.origin,
                "parents": self.parents, "scores": self.scores,
                "fitness": self.fitness.to_dict() if self.fitness else None, "tokens": self.tokens, "ms": self.ms,
                "error": self.error, "over_budget": self.over_budget, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Entry":
        fit = data.get("fitness")
        return cls(design=AgentDesign.from_dict(data["design"]), generation=data["generation"], origin=data["origin"],
                   parents=list(data["parents"]), scores=list(data["scores"]),
                   fitness=Interval(fit["mean"], fit["low"], fit["high"], fit["confidence"]) if fit else None,
                   tokens=data["tokens"], ms=data["ms"], error=data.get("error"),
                   over_budget=data.get("over_budget", False), stopped_early=data.get("stopped_early", False))


@dataclass
class Archive:
    entries: list[Entry] = field(default_factory=list)
    best_low: list[float] = field(default_factory=list)  # best lower bound after each generation (0 = the seeds)
    median_mean: list[float] = field(default_factory=list)  # median validation accuracy of each generation's designs
    best_mean: list[float] = field(default_factory=list)

    def known(self, design: AgentDesign) -> bool:
        return any(e.design.key() == design.key() for e in self.entries)

    def scored(self) -> list[Entry]:
        return [e for e in self.entries if e.fitness is not None]

    def eligible(self) -> list[Entry]:
        """Scored designs within the cost budget (what selection and the final choice draw from)."""
        return [e for e in self.scored() if not e.over_budget]

    def best(self) -> Entry:
        return max(self.eligible(), key=Entry.rank_key)

    def pareto_front(self) -> list[Entry]:
        """Designs no other design beats on both accuracy (mean) and cost (tokens per answer), cheapest first."""
        scored = self.scored()
        front = [e for e in scored
                 if not any((o.fitness.mean >= e.fitness.mean and o.tokens <= e.tokens)
                            and (o.fitness.mean > e.fitness.mean or o.tokens < e.tokens) for o in scored)]
        return sorted(front, key=lambda e: e.tokens)

    def close_generation(self, generation: int) -> None:
        import statistics

        scored = self.scored()
        self.best_low.append(self.best().fitness.low)
        self.best_mean.append(max(e.fitness.mean for e in scored))
        this = [e.fitness.mean for e in scored if e.generation == generation]
        self.median_mean.append(statistics.median(this) if this else float("nan"))

    def stalled_for(self) -> int:
        """Generations since the best lower confidence bound last improved."""
        if not self.best_low:
            return 0
        top, since = self.best_low[0], 0
        for value in self.best_low[1:]:
            if value > top + 1e-9:
                top, since = value, 0
            else:
                since += 1
        return since

    def save(self, path: Path) -> None:
        data = {"entries": [e.to_dict() for e in self.entries], "best_low": self.best_low,
                "median_mean": self.median_mean, "best_mean": self.best_mean}
        atomic_write_text(path, json.dumps(data) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Archive":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls([Entry.from_dict(e) for e in data["entries"]], data["best_low"], data["median_mean"],
                   data["best_mean"])
