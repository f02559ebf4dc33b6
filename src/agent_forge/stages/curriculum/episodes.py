"""The four kinds of tasks a curriculum level mixes, each turned into an `Episode` the cycle can roll out.

- organic: worked solutions as demonstrations (the task corpora's train split by default, or the user's
  text/JSONL files): supervised signal, no sampling.
- synthetic: procedurally generated tasks at the level's difficulty, rolled out and verified.
- retrieval: `facts` tasks whose prompt carries passages retrieved from the knowledge base by BM25, plus
  distractor passages, shuffled; verified like any fact task.
- multi_agent: a solver instance answers, then a critic instance of the same model judges each answer
  ("yes"/"no"); the verifier's outcome rewards both roles (see `multi_agent.py`).

The self-awareness prefix (who the model is, its level, its recent accuracy in the domain) is prepended to a
share of the prompts, so the model meets both forms. Exercise: `pytest tests/stages/curriculum/test_episodes.py`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import ForgeError
from ...memory.bm25 import BM25Retriever
from ...tasks import DOMAINS, KnowledgeBase, Task, split_of_task, verify

KINDS = ("organic", "synthetic", "retrieval", "multi_agent")
ROLLED_OUT = ("synthetic", "retrieval", "multi_agent")


@dataclass
class Episode:
    """One prompt to roll out: what the model sees, the task that verifies it, and how it was made."""

    task: Task
    prompt: str
    kind: str
    # scores an output in [0, 1]; defaults to the task's verifier
    scorer: Callable[[str], float] | None = field(default=None, repr=False)

    def score(self, output: str) -> float:
        return self.scorer(output) if self.scorer is not None else verify(self.task, output)

    @property
    def replay_key(self) -> str:
        return f"{self.task.domain}:{self.task.level}"


def self_awareness_prefix(level: int, domain: str, recent_accuracy: float | None) -> str:
    """Who the model is, its curriculum level and its recent accuracy in the domain, in one short line."""
    acc = "new" if recent_accuracy is None else f"{round(100 * recent_accuracy)}"
    return f"forge l{level} {domain} acc {acc}: "


def sample_train_task(domain: str, level: int, rng: random.Random, world_seed: int, tries: int = 64) -> Task:
    """A fresh task of the train split (validation and test instances are never trained on)."""
    dom = DOMAINS[domain]
    for _ in range(tries):
        task = dom.sample(level, rng, world_seed)
        if split_of_task(task) == "train":
            return task
    raise ForgeError(f"could not draw a training task for {domain} level {level}")


def retrieval_prompt(task: Task, retriever: BM25Retriever, rng: random.Random, n_passages: int) -> str:
    """The question preceded by the top BM25 hits and random distractors, shuffled, `n_passages` in all."""
    hits = retriever.search(task.prompt, k=max(1, n_passages - 1))
    others = [i for i in range(len(retriever.passages)) if i not in hits]
    distractors = rng.sample(others, k=min(len(others), n_passages - len(hits)))
    chosen = hits + distractors
    rng.shuffle(chosen)
    context = " ".join(retriever.passages[i] for i in chosen)
    return f"context: {context}\n{task.prompt}"


def load_organic_pairs(paths: list[str]) -> list[tuple[str, str]]:
    """(prompt, answer) pairs from JSONL records {"prompt", "answer"} or `prompt<TAB>answer` text lines."""
    pairs: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise ForgeError(f"organic dataset not found: {path}")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                    pairs.append((str(record["prompt"]), str(record["answer"])))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ForgeError(f"{path}:{n}: expected a JSON object with 'prompt' and 'answer'") from None
            elif "\t" in line:
                prompt, answer = line.split("\t", 1)
                pairs.append((prompt, answer))
            else:
                raise ForgeError(f"{path}:{n}: expected JSONL or 'prompt<TAB>answer' lines")
    if paths and not pairs:
        raise ForgeError(f"organic datasets {paths} hold no pairs")
    return pairs


class TaskMixer:
    """Draws a level's episodes and demonstrations in the configured proportions of the four kinds."""

    def __init__(self, mix_cfg, world_seed: int, prefix_probability: float, use_prefix: bool):
        self.weights = {k: float(getattr(mix_cfg, k)) for k in ROLLED_OUT}
        self.organic = int(mix_cfg.organic)
        self.world_seed = world_seed
        self.n_passages = mix_cfg.retrieval_passages
        self.prefix_probability = prefix_probability if use_prefix else 0.0
        self.user_pairs = load_organic_pairs(list(mix_cfg.organic_paths))
        # single statements, not whole per-person passages: a prompt of a few short sentences stays within
        # the context a tiny model was trained on
        self.retriever = BM25Retriever(KnowledgeBase.build(world_seed).statements())

    def _with_prefix(self, prompt: str, task: Task, level: int, accuracy: dict, rng: random.Random) -> str:
        if rng.random() < self.prefix_probability:
            return self_awareness_prefix(level, task.domain, accuracy.get(task.domain)) + prompt
        return prompt

    def counts(self, n: int, rng: random.Random) -> dict[str, int]:
        """How many of `n` prompts each rolled-out kind gets (largest remainders, ties broken by the rng),
        plus the fixed number of organic demonstrations."""
        total = sum(self.weights.values())
        exact = {k: n * w / total for k, w in self.weights.items()}
        out = {k: int(v) for k, v in exact.items()}
        rest = sorted(ROLLED_OUT, key=lambda k: (-(exact[k] - out[k]), rng.random()))
        for k in rest[: n - sum(out.values())]:
            out[k] += 1
        return {"organic": self.organic, **out}

    def draw(
        self, n: int, targets: dict[str, int], difficulty: float | dict[str, float], curriculum_level: int, accuracy: dict,
        rng: random.Random, domain_weights: dict[str, float] | None = None,
    ) -> tuple[list[Episode], list[tuple[str, str]]]:
        """Episodes to roll out and organic demonstrations for one cycle.

        `targets` maps each active domain to the task level it is learning; with probability `1 - difficulty`
        (one number, or one per domain) a prompt comes from the level below (the edge-of-chaos knob). `domain_weights` sets how
        often each domain is drawn (uniform when omitted; see `learning_signal_weights`).
        """
        counts = self.counts(n, rng)
        pick_domain = _domain_picker(targets, domain_weights, rng)
        episodes: list[Episode] = []
        demos: list[tuple[str, str]] = []

        level_for = _level_picker(targets, difficulty, rng)
        for _ in range(counts["synthetic"]):
            domain = pick_domain()
            task = sample_train_task(domain, level_for(domain), rng, self.world_seed)
            episodes.append(Episode(task, self._with_prefix(task.prompt, task, curriculum_level, accuracy, rng), "synthetic"))
        for _ in range(counts["multi_agent"]):
            domain = pick_domain()
            task = sample_train_task(domain, level_for(domain), rng, self.world_seed)
            episodes.append(Episode(task, self._with_prefix(task.prompt, task, curriculum_level, accuracy, rng), "multi_agent"))
        fact_domain = "facts" if "facts" in targets else None
        for _ in range(counts["retrieval"]):
            level = level_for(fact_domain) if fact_domain else rng.randint(1, 3)
            task = sample_train_task("facts", level, rng, self.world_seed)
            prompt = retrieval_prompt(task, self.retriever, rng, self.n_passages)
            episodes.append(Episode(task, prompt, "retrieval"))
        demos.extend(self.demonstrations(targets, rng, domain_weights, counts["organic"], difficulty))
        return episodes, demos

    def demonstrations(
        self, targets: dict[str, int], rng: random.Random, domain_weights: dict[str, float] | None = None,
        n: int | None = None, difficulty: float | dict[str, float] = 1.0,
    ) -> list[tuple[str, str]]:
        """`n` (default: the configured `organic`) organic demonstrations: the user's pairs, or worked solutions
        drawn like the rolled-out prompts: domains by `domain_weights`, the level below the target with
        probability `1 - difficulty`. Those below-target demonstrations rehearse the level the domain has just
        mastered: with every demonstration at the target, arithmetic level 1 (confirmed at about 0.8) ended two
        short tiny runs at 60 and 70 on test once level 2 was being trained."""
        pick_domain = _domain_picker(targets, domain_weights, rng)
        level_for = _level_picker(targets, difficulty, rng)
        demos = []
        for _ in range(self.organic if n is None else n):
            if self.user_pairs:
                demos.append(rng.choice(self.user_pairs))
            else:
                domain = pick_domain()
                task = sample_train_task(domain, level_for(domain), rng, self.world_seed)
                demos.append((task.prompt, task.answer))
        return demos


def _domain_picker(targets: dict[str, int], domain_weights: dict[str, float] | None, rng: random.Random):
    """A function drawing one of `targets`' domains by `domain_weights` (uniformly when omitted or all zero)."""
    domains = sorted(targets)
    weights = [max(0.0, domain_weights.get(d, 1.0)) for d in domains] if domain_weights else None
    if weights is not None and sum(weights) <= 0:
        weights = [1.0] * len(domains)
    return lambda: rng.choices(domains, weights=weights)[0] if weights else rng.choice(domains)


def _level_picker(targets: dict[str, int], difficulty: float | dict[str, float], rng: random.Random):
    """A function giving a domain's task level: its target, or the level below with probability 1 - difficulty."""
    def level_for(domain: str) -> int:
        target = targets[domain]
        knob = difficulty[domain] if isinstance(difficulty, dict) else difficulty
        return target - 1 if target > 1 and rng.random() >= knob else target
    return level_for


def learning_signal_weights(domains, accuracy: dict[str, float], floor: float) -> dict[str, float]:
    """How often to draw each domain: p(1-p) of its accuracy p at the level it is learning, plus a floor.

    A group-baseline policy gradient learns nothing from a group whose samples all succeed or all fail (every
    advantage is zero), so prompts pay most where success is near one half and least where the domain is
    solved or out of reach; the floor keeps every domain sampled so its estimate can recover. A domain
    without an estimate yet counts as p = 1/2.
    """
    weights = {}
    for d in domains:
        p = accuracy.get(d)
        p = 0.5 if p is None else min(1.0, max(0.0, p))
        weights[d] = p * (1.0 - p) + floor
    return weights
