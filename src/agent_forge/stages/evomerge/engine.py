"""The evolution loop: evaluate a population, record lineage and history, stop on a limit or on patience,
checkpoint after every generation, and resume from the last finished one.

The loop is independent of how new candidates are proposed: a `Strategy` (the genetic algorithm in `ga.py`,
or CMA-ES in `cmaes.py`) gives the first population and breeds each next one from the evaluated current one.
It is also independent of what fitness means: an `Evaluator` (see `population.py`) scores recipes, so the
loop is tested with synthetic fitness functions and used by the stage with validation accuracy.

Files in `out_dir`: `lineage.jsonl` (every evaluated candidate), `state.json` (the checkpoint: the population
about to be evaluated, RNG state, history, best so far), `evolution.png` (the plot). A run whose state says
"done" returns its result without evaluating anything. Exercise: `python -m pytest tests/stages/evomerge/test_engine.py`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from ...errors import ForgeError
from ...utils.atomic import atomic_write_json
from .lineage import LineageLog
from .operators import diversity
from .plots import plot_history
from .population import Evaluator, Fitness
from .recipe import Recipe
from .space import SearchSpace

STATE_NAME = "state.json"
LINEAGE_NAME = "lineage.jsonl"
PLOT_NAME = "evolution.png"


@dataclass
class Candidate:
    """A recipe in the population, with where it came from and, once evaluated, its fitness."""

    id: int
    generation: int
    recipe: Recipe
    parents: list[int] = field(default_factory=list)
    origin: str = "random"
    fitness: Fitness | None = None
    seconds: float = 0.0

    def sort_key(self):
        assert self.fitness is not None
        score, tiebreak = self.fitness.key()
        return (-score, -tiebreak, self.id)

    def to_json(self) -> dict:
        return {"id": self.id, "generation": self.generation, "recipe": self.recipe.to_json(), "parents": self.parents,
                "origin": self.origin, "fitness": self.fitness.to_json() if self.fitness else None,
                "seconds": round(self.seconds, 4), "label": self.recipe.label()}

    @classmethod
    def from_json(cls, obj: dict) -> "Candidate":
        return cls(obj["id"], obj["generation"], Recipe.from_json(obj["recipe"]), list(obj["parents"]), obj["origin"],
                   Fitness.from_json(obj["fitness"]) if obj.get("fitness") else None, float(obj.get("seconds", 0.0)))


@dataclass
class Proposal:
    """A new candidate-to-be: recipe, parent ids and how it was made."""

    recipe: Recipe
    parents: list[int] = field(default_factory=list)
    origin: str = "random"


class Strategy(Protocol):
    def initial(self, rng: np.random.Generator) -> list[Proposal]: ...

    def breed(self, population: list[Candidate], seen: set[str], rng: np.random.Generator) -> list[Proposal | Candidate]:
        """The next population: new proposals, and already-evaluated candidates carried over unchanged."""
        ...

    def state(self) -> dict[str, Any]: ...

    def load(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopSettings:
    """When to stop and how to seed: at most `generations`, or `patience` generations without improvement."""

    generations: int = 10
    patience: int = 4
    seed: int = 0


@dataclass
class EvolutionResult:
    best: Candidate
    history: list[dict]
    stop_reason: str
    evaluations: int
    lineage_path: Path
    plot_path: Path | None


class Evolution:
    """Runs a strategy against an evaluator, with lineage, history, patience and generation checkpoints."""

    def __init__(self, space: SearchSpace, strategy: Strategy, evaluator: Evaluator, settings: LoopSettings,
                 out_dir: Path | str, fingerprint: str = "", progress: bool = True, plot: bool = True):
        if settings.generations < 1:
            raise ForgeError(f"evomerge.generations must be >= 1, got {settings.generations}")
        if settings.patience < 1:
            raise ForgeError(f"evomerge.patience must be >= 1, got {settings.patience}")
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.progress = progress
        self.plot = plot
        self.lineage = LineageLog(self.out_dir / LINEAGE_NAME)

    # ---- checkpoint ----------------------------------------------------------------------------------
    def _fresh_state(self) -> dict:
        rng = np.random.default_rng(self.settings.seed)
        proposals = self.strategy.initial(rng)
        population = [Candidate(i, 0, p.recipe, p.parents, p.origin) for i, p in enumerate(proposals)]
        self.lineage.truncate_after(-1)
        return {"fingerprint": self.fingerprint, "generation": 0, "population": population, "rng": rng,
                "history": [], "best": None, "stale": 0, "next_id": len(population), "done": False,
                "stop_reason": "", "evaluations": 0}

    def _save(self, state: dict) -> None:
        atomic_write_json(self.out_dir / STATE_NAME, {
            **{k: state[k] for k in ("fingerprint", "generation", "history", "stale", "next_id", "done", "stop_reason",
                                     "evaluations")},
            "population": [c.to_json() for c in state["population"]],
            "best": state["best"].to_json() if state["best"] else None,
            "rng": state["rng"].bit_generator.state,
            "strategy": self.strategy.state(),
        })

    def _load(self) -> dict | None:
        path = self.out_dir / STATE_NAME
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # written atomically, so this is a foreign file: start over
        if raw.get("fingerprint") != self.fingerprint:
            return None  # other inputs or settings: the old search says nothing about this one
        rng = np.random.default_rng()
        rng.bit_generator.state = raw["rng"]
        self.strategy.load(raw["strategy"])
        # generations after the checkpointed one never finished: their lineage lines are rewritten
        self.lineage.truncate_after(raw["generation"] - 1)
        return {**raw, "rng": rng, "population": [Candidate.from_json(c) for c in raw["population"]],
                "best": Candidate.from_json(raw["best"]) if raw["best"] else None}

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> EvolutionResult:
        state = self._load() or self._fresh_state()
        settings = self.settings
        total = settings.generations * max(len(state["population"]), 1)
        bar = tqdm(total=total, initial=state["generation"] * len(state["population"]), desc="evomerge",
                   unit="cand", disable=not self.progress or state["done"])
        try:
            while not state["done"]:
                self._evaluate(state, bar)
                self._finish_generation(state)
                self._save(state)
        finally:
            bar.close()
        plot = plot_history(state["history"], self.out_dir / PLOT_NAME) if self.plot and state["history"] else None
        return EvolutionResult(state["best"], state["history"], state["stop_reason"], state["evaluations"],
                               self.lineage.path, plot)

    def _evaluate(self, state: dict, bar) -> None:
        pending = [c for c in state["population"] if c.fitness is None]
        for index, fitness, seconds in self.evaluator.evaluate([c.recipe for c in pending]):
            candidate = pending[index]
            candidate.fitness, candidate.seconds = fitness, seconds
            self.lineage.append(candidate.to_json())
            state["evaluations"] += 1
            bar.update(1)
            best = state["best"]
            shown = max(fitness.score, best.fitness.score) if best else fitness.score
            bar.set_postfix(gen=state["generation"], best=f"{shown:.4f}")
        bar.update(len(state["population"]) - len(pending))

    def _finish_generation(self, state: dict) -> None:
        population: list[Candidate] = state["population"]
        ranked = sorted(population, key=Candidate.sort_key)
        leader = ranked[0]
        improved = state["best"] is None or leader.sort_key() < state["best"].sort_key()
        if improved:
            state["best"] = leader
        state["stale"] = 0 if improved else state["stale"] + 1
        scores = [c.fitness.score for c in population]
        generation = state["generation"]
        state["history"].append({
            "generation": generation, "best": leader.fitness.score, "median": float(statistics.median(scores)),
            "best_so_far": state["best"].fitness.score, "best_id": state["best"].id,
            "diversity": diversity([c.recipe for c in population], self.space),
            "seconds": round(sum(c.seconds for c in population if c.generation == generation), 3),
        })
        if generation + 1 >= self.settings.generations:
            state["done"], state["stop_reason"] = True, f"generation limit ({self.settings.generations})"
        elif state["stale"] >= self.settings.patience:
            state["done"], state["stop_reason"] = True, f"no improvement for {self.settings.patience} generations"
        if state["done"]:
            return
        seen = {Recipe.from_json(r["recipe"]).key() for r in self.lineage.records()}
        seen.update(c.recipe.key() for c in population)
        nxt = []
        for item in self.strategy.breed(population, seen, state["rng"]):
            if isinstance(item, Candidate):
                nxt.append(item)  # carried over: keeps its id, generation of birth and fitness
            else:
                nxt.append(Candidate(state["next_id"], generation + 1, item.recipe, item.parents, item.origin))
                state["next_id"] += 1
        state["population"] = nxt
        state["generation"] = generation + 1
