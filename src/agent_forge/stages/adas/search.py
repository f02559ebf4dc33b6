"""The ADAS search (Hu et al. 2024): an archive of agent designs grown by evolutionary proposals until it plateaus.

`ADASystem(agent, val_tasks, config).optimize_agent_architecture()` (the original design's name):
1. the archive starts from the hand-designed seeds (`DesignSpace.seeds`), each scored on the validation items;
2. each generation proposes `children` designs: parents chosen by tournament on the lower confidence bound,
   then mutation or uniform crossover (the proposer sees selected parents, never the whole archive, which
   later work found to do better than the paper's archive-in-context prompting); with a meta-agent
   configured, it also asks for designs written as code, which run only in the sandbox;
3. it stops when the best lower confidence bound has not risen for `patience` generations, or after
   `max_generations`.
Each generation draws from its own seed (`derive_seed(seed, "generation", g)`), and the archive is written after
each one, so a killed search resumes at the next generation with the same result.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Sequence

from ...errors import ForgeError
from ...evaluation import evaluate_agent
from ...evaluation.intervals import bootstrap_interval
from ...inference.design import TokenLimitReached, counting_cost, run_program
from ...models.formats.design import AgentDesign
from ...utils import derive_seed, progress
from .archive import Archive, Entry
from .space import DesignSpace

ARCHIVE_FILE = "archive.json"


def score_design(agent, design: AgentDesign, tasks: Sequence, *, batch_size: int = 64,
                 max_tokens_per_answer: float | None = None) -> tuple[list[float] | None, float, float]:
    """Per-item verifier scores of `agent` answering `tasks` through `design`, and tokens and ms per answer.

    With `max_tokens_per_answer`, scoring stops as soon as the tokens spent exceed that many times the number of
    tasks: the design's mean cost is then over the limit whatever the unanswered items would cost (tokens are
    never negative), so the rest would be wasted. Its scores are then None and the tokens per answer a lower
    bound."""
    saved = agent.extensions.get("design")
    agent.extensions["design"] = design
    limit = None if max_tokens_per_answer is None else max_tokens_per_answer * len(tasks)
    try:
        with counting_cost(agent, len(tasks), token_limit=limit) as cost:
            report = evaluate_agent(agent, list(tasks), "generate", batch_size=batch_size)
    except TokenLimitReached:
        pass
    finally:
        if saved is None:
            agent.extensions.pop("design", None)
        else:
            agent.extensions["design"] = saved
    per = cost.per_answer()
    if cost.limit_reached:  # also where a generated block's host calls swallowed the exception
        return None, per["tokens"], per["ms"]
    return [float(item[3]) for item in report.items], per["tokens"], per["ms"]


class ADASystem:
    """The search over one agent's designs; `optimize_agent_architecture()` returns the final archive."""

    def __init__(self, agent, val_tasks: Sequence, config, *, seed: int, scratch: Path | None = None,
                 say: Callable[[str], None] = print, meta_agent=None, batch_size: int = 64,
                 entering: AgentDesign | None = None):
        self.agent, self.tasks, self.ac, self.seed = agent, list(val_tasks), config, seed
        self.scratch, self.say, self.meta_agent, self.batch_size = scratch, say, meta_agent, batch_size
        self.space = DesignSpace.of(agent)
        self.entering = entering or AgentDesign(name="plain")
        self.budget: float | None = None  # tokens per answer a design may cost to be chosen

    def seeds(self) -> list[AgentDesign]:
        """The entering design first (the cost reference), then the hand-designed seeds."""
        seeds = [self.entering]
        for design in self.space.seeds():
            if all(design.key() != s.key() for s in seeds):
                seeds.append(design)
        return seeds

    # --- scoring ------------------------------------------------------------------------------------------
    def evaluate(self, entry: Entry) -> Entry:
        design = entry.design
        scores, entry.tokens, entry.ms = score_design(self.agent, design, self.tasks, batch_size=self.batch_size,
                                                      max_tokens_per_answer=self.budget)
        if design.program is not None:
            outcome = run_program.last_outcome
            if outcome is not None and not outcome.ok and scores is not None:
                entry.error = outcome.error
        if scores is None:  # stopped once it had spent the budget of every item: certain to be over it
            entry.scores, entry.over_budget, entry.stopped_early = [], True, True
            self.say(f"  {design.name}: stopped early, over the budget of {self.budget:.0f} tokens per answer "
                     f"(at least {entry.tokens:.0f} spent per answer) [{design.describe()}]")
            return entry
        entry.scores = scores
        if self.budget is not None:
            entry.over_budget = entry.tokens > self.budget
        entry.fitness = bootstrap_interval(entry.scores, resamples=self.ac.bootstrap, confidence=self.ac.confidence,
                                           seed=derive_seed(self.seed, "bootstrap"))
        self.say(f"  {design.name}: validation {entry.fitness} ({entry.tokens:.0f} tokens, {entry.ms:.0f} ms per "
                 f"answer){' - ' + entry.error if entry.error else ''}{' - over budget' if entry.over_budget else ''} "
                 f"[{design.describe()}]")
        return entry

    # --- proposals ----------------------------------------------------------------------------------------
    def _tournament(self, archive: Archive, rng: random.Random) -> Entry:
        pool = archive.eligible()
        drawn = rng.sample(pool, min(self.ac.tournament, len(pool)))
        return max(drawn, key=Entry.rank_key)

    def propose(self, archive: Archive, generation: int) -> list[Entry]:
        rng = random.Random(derive_seed(self.seed, "generation", generation))
        children: list[Entry] = []
        attempts = 0
        while len(children) < self.ac.children and attempts < 50 * self.ac.children:
            attempts += 1
            name = f"g{generation}-{len(children) + 1}"
            first = self._tournament(archive, rng)
            if rng.random() < self.ac.crossover:
                second = self._tournament(archive, rng)
                design, origin, parents = self.space.crossover(first.design, second.design, rng, name), "crossover", [
                    first.name, second.name]
            else:
                design, origin, parents = self.space.mutate(first.design, rng, self.ac.mutations, name), "mutation", [
                    first.name]
            if archive.known(design) or any(c.design.key() == design.key() for c in children):
                continue
            if self._cost_floor(archive, design) > (self.budget or float("inf")):
                continue  # certain to be over budget: not worth scoring
            children.append(Entry(design, generation, origin, parents))
        return children + self._meta_proposals(archive, generation, rng)

    def _cost_floor(self, archive: Archive, design: AgentDesign) -> float:
        """A rough lower bound on a design's tokens per answer, from what the archive measured: every vote costs
        at least the cheapest single answer scored so far, and thinking multiplies an answer's tokens by what
        the chain-of-thought seed measured against the entering design."""
        entering = archive.entries[0]
        # entries stopped early count too: their tokens per answer are a lower bound, which is what a floor needs
        single = [e.tokens for e in archive.entries if e.design.votes == 1 and not e.design.think
                  and e.design.refine_below is None and e.design.retry_below is None and e.design.program is None]
        floor = min(single, default=entering.tokens) * design.votes
        if design.think:
            thinking = [e.tokens / entering.tokens for e in archive.entries
                        if e.design.key() == AgentDesign(think=True).key() and entering.tokens > 0]
            floor *= thinking[0] if thinking else 1.0
        return floor

    def _meta_proposals(self, archive: Archive, generation: int, rng: random.Random) -> list[Entry]:
        if self.meta_agent is None:
            return []
        parents = sorted({e.name: e for e in (self._tournament(archive, rng) for _ in range(3))}.values(),
                         key=Entry.rank_key, reverse=True)
        context = {"task": "answer short task prompts (arithmetic, strings, logic, facts) correctly",
                   "parents": [{"name": e.name, "design": e.design.describe(), "program": e.design.program,
                                "validation_accuracy": round(e.fitness.mean, 2), "tokens_per_answer": round(e.tokens)}
                               for e in parents]}
        try:
            proposals = self.meta_agent.propose(context, self.ac.meta_agent.proposals, derive_seed(self.seed, "meta", generation))
        except ForgeError as error:
            self.say(f"  meta-agent: {error} (continuing with evolution alone)")
            return []
        out = []
        for k, proposal in enumerate(proposals):
            design = AgentDesign(name=f"g{generation}-code{k + 1}-{proposal.name}"[:80], program=proposal.source)
            if not archive.known(design):
                out.append(Entry(design, generation, "meta-agent", [e.name for e in parents]))
        return out

    # --- the loop -----------------------------------------------------------------------------------------
    def _load(self, fingerprint: str) -> Archive | None:
        if self.scratch is None:
            return None
        path = self.scratch / ARCHIVE_FILE
        marker = self.scratch / "archive.fingerprint"
        if path.is_file() and marker.is_file() and marker.read_text() == fingerprint:
            return Archive.load(path)
        return None

    def _save(self, archive: Archive, fingerprint: str) -> None:
        if self.scratch is None:
            return
        from ...utils import atomic_write_text

        self.scratch.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.scratch / "archive.fingerprint", fingerprint)
        archive.save(self.scratch / ARCHIVE_FILE)

    def optimize_agent_architecture(self, fingerprint: str = "") -> Archive:
        archive = self._load(fingerprint)
        if archive is not None:
            self.say(f"resuming the search after generation {len(archive.best_low) - 1}")
            self.budget = self.ac.max_cost_ratio * archive.entries[0].tokens
        else:
            archive = Archive()
            seeds = self.seeds()
            self.say(f"generation 0: the entering design and the hand-designed seeds ({len(seeds)})")
            for k, design in enumerate(progress(seeds, desc="adas seeds", unit="design")):
                entry = self.evaluate(Entry(design, 0, "entering" if k == 0 else "seed"))
                archive.entries.append(entry)
                if k == 0:  # the entering design sets the budget; it is within it by definition
                    self.budget = self.ac.max_cost_ratio * entry.tokens
            for entry in archive.entries[1:]:
                entry.over_budget = entry.stopped_early or entry.tokens > self.budget
            archive.close_generation(0)
            self._save(archive, fingerprint)
        while len(archive.best_low) <= self.ac.max_generations:
            if archive.stalled_for() >= self.ac.patience:
                self.say(f"stopping: the best lower confidence bound has not risen for {self.ac.patience} generations")
                break
            generation = len(archive.best_low)
            children = self.propose(archive, generation)
            self.say(f"generation {generation}: {len(children)} proposals")
            for entry in progress(children, desc=f"adas generation {generation}", unit="design"):
                archive.entries.append(self.evaluate(entry))
            archive.close_generation(generation)
            self._save(archive, fingerprint)
        return archive
