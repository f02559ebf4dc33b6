"""Candidate prompts of three kinds, each with the inputs it is baked on and the score it must raise.

(a) knowledge: each facts question with the knowledge base's statements it needs in context (the curriculum's
`context: ...` form; one prompt per question, so a bake carries the whole family), and any text file the user
names; (b) reasoning strategies per domain: an instruction, and worked demonstrations (earlier turns answering
train tasks); (c) the identity: each persona field and rule, as a statement or a worked demonstration.

A candidate maps a plain prompt x to its prompted form u + x (`prompted(x)`); the stage scores it on
validation with the prompt in context, and bakes it on `train` inputs. Exercise: `pytest tests/stages/baking`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import ForgeError
from ...tasks import Task, make_tasks
from .identity import Part

INSTRUCTIONS = {
    "arithmetic": "hint: work digit by digit from the left and carry to the right.",
    "strings": "hint: apply the function to the word letter by letter.",
    "logic": "hint: read all the numbers, then answer with the one asked for.",
    "facts": "hint: answer with one word from what you know of the world.",
}


@dataclass
class Candidate:
    name: str
    kind: str  # knowledge | strategy | identity
    target: str  # a domain (task accuracy) or an identity part's name
    prefix: Callable[[str], str]  # plain prompt -> the prompt u put before it ("" for none)
    train: list[str]  # plain prompts the bake samples trajectories on
    val: list[str]  # plain prompts of the held-out KL
    val_tasks: list[Task] = field(default_factory=list)  # task targets: the validation tasks scored
    part: Part | None = None  # identity targets: the part scored

    def prompted(self, prompt: str) -> str:
        return self.prefix(prompt) + prompt


def _context_of(tasks: list[Task]) -> dict[str, str]:
    # a facts task's rationale is the statements it needs, in the knowledge base's own wording
    return {t.prompt: f"context: {t.rationale}\n" for t in tasks if t.rationale}


def knowledge_candidates(cfg, train_facts: list[Task], val_facts: list[Task], all_train: list[Task],
                         all_val: list[Task]) -> list[Candidate]:
    contexts = _context_of(train_facts + val_facts)
    out = [Candidate("knowledge:facts passages", "knowledge", "facts", lambda x: contexts.get(x, ""),
                     [t.prompt for t in train_facts], [t.prompt for t in val_facts], val_facts)]
    for path in cfg.knowledge_texts:
        try:
            text = " ".join(Path(path).read_text(encoding="utf-8").split()).lower()
        except (OSError, UnicodeDecodeError) as exc:
            raise ForgeError(f"baking.knowledge_texts: cannot read {path}: {exc}") from None
        if not text:
            raise ForgeError(f"baking.knowledge_texts: {path} is empty")
        prefix = f"context: {text}\n"
        out.append(Candidate(f"knowledge:{Path(path).name}", "knowledge", "all", lambda x, p=prefix: p,
                             [t.prompt for t in all_train], [t.prompt for t in all_val], all_val))
    return out


def strategy_candidates(cfg, fmt, domains: list[str], train: dict[str, list[Task]], val: dict[str, list[Task]],
                        seed: int) -> list[Candidate]:
    out = []
    for d in domains:
        hint = INSTRUCTIONS.get(d)
        if hint:
            out.append(Candidate(f"strategy:{d}:instruction", "strategy", d, lambda x, h=hint: h + "\n",
                                 [t.prompt for t in train[d]], [t.prompt for t in val[d]], val[d]))
        rng = random.Random(seed * 31 + len(d))
        shots = [make_tasks(d, lvl, "train", 1, rng.randrange(2**31), world_seed=seed)[0]
                 for lvl in rng.sample(list(cfg.levels), min(cfg.demonstrations, len(cfg.levels)))]
        demo = "".join(fmt.training_text(t.prompt, t.answer) for t in shots)
        out.append(Candidate(f"strategy:{d}:demonstrations", "strategy", d, lambda x, u=demo: u,
                             [t.prompt for t in train[d] if t.prompt not in demo],
                             [t.prompt for t in val[d]], val[d]))
    return out


def identity_candidates(parts: list[Part], fmt) -> list[Candidate]:
    out = []
    for part in parts:
        for style, prefix in (("statement", part.statement + "\n"), ("demonstration", part.demonstration(fmt))):
            out.append(Candidate(f"identity:{part.name}:{style}", "identity", part.name, lambda x, u=prefix: u,
                                 list(part.questions["train"]), list(part.questions["val"]), part=part))
    return out
