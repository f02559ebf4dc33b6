"""The space of agent designs the search moves in, given what the entering agent has.

Each `AgentDesign` field that the agent can use gets a small set of values (thinking only for an agent with a
thought head, dispatch only with experts, tool policy only with tools, memory k only with a memory store).
`seeds()` are the hand-designed starting points of ADAS's archive: plain answer, chain of thought (Quiet-STaR
thoughts), self-consistency, self-refine, tool-first, abstain-and-retry and, for an agent with experts, the
agent without expert dispatch (so every search measures whether the experts help, rather than leaving that
ablation to a lucky mutation); `mutate` changes a few fields to
other values, `crossover` takes each field from one of two parents (uniform crossover).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from ...models.formats.design import AgentDesign


@dataclass(frozen=True)
class DesignSpace:
    thinks: bool
    thought_length: int | None
    has_experts: bool
    has_tools: bool
    has_memory: bool
    layers: int

    @classmethod
    def of(cls, agent) -> "DesignSpace":
        tools = agent.extensions.get("tools")
        thoughts = agent.extensions.get("thoughts")
        return cls(
            thinks=agent.thinks,
            thought_length=thoughts.thought_length if thoughts is not None else None,
            has_experts=agent.extensions.get("experts") is not None,
            has_tools=tools is not None,
            has_memory=tools is not None and getattr(tools, "memory_path", None) is not None,
            layers=int(getattr(agent.model.config, "num_hidden_layers", 1)),
        )

    def choices(self) -> dict[str, list]:
        """Field -> the values the search may give it (the plain design's value among them)."""
        options: dict[str, list] = {
            "temperature": [0.0, 0.3, 0.7],
            "votes": [1, 3, 5, 7],
            "vote_temperature": [0.3, 0.7, 1.0],
            "refine_below": [None, 0.3, 0.5, 0.7, 0.9],
            "retry_below": [None, 0.3, 0.5, 0.7, 0.9],
            "retries": [1, 2, 3],
            "abstain": [False, True],
            "layers": [None, *range(max(1, self.layers // 2), self.layers)],
        }
        if self.thinks:
            options["think"] = [False, True]
            base = self.thought_length or 4
            options["thought_length"] = [None, *sorted({max(1, base // 2), base * 2} - {base})]
        if self.has_experts:
            options["dispatch"] = ["auto", "off"]
            options["dispatch_threshold"] = [None, 0.3, 0.5, 0.7, 0.9]
        if self.has_tools:
            options["tools"] = ["model", "off", "first"]
            options["max_calls"] = [None, 1, 2, 4, 8]
        if self.has_memory:
            options["memory_k"] = [None, 1, 2, 3, 5]
        return options

    def seeds(self) -> list[AgentDesign]:
        """The hand-designed archive seeds (each valid for this agent)."""
        designs = [
            AgentDesign(name="plain"),
            AgentDesign(name="self_consistency", votes=5, vote_temperature=0.7),
            AgentDesign(name="self_refine", refine_below=0.5),
            AgentDesign(name="abstain_and_retry", retry_below=0.5, retries=2),
        ]
        if self.thinks:
            designs.insert(1, AgentDesign(name="chain_of_thought", think=True))
        if self.has_tools:
            designs.append(AgentDesign(name="tool_first", tools="first"))
        if self.has_experts:
            designs.append(AgentDesign(name="no_dispatch", dispatch="off"))
        return designs

    def mutate(self, design: AgentDesign, rng: random.Random, most: int, name: str) -> AgentDesign:
        options = self.choices()
        names = sorted(options)
        changes = {}
        for field_name in rng.sample(names, rng.randint(1, min(most, len(names)))):
            others = [v for v in options[field_name] if v != getattr(design, field_name)]
            if others:
                changes[field_name] = rng.choice(others)
        return design.with_changes(name=name, program=None, **changes).canonical()

    def crossover(self, a: AgentDesign, b: AgentDesign, rng: random.Random, name: str) -> AgentDesign:
        picked = {f.name: getattr(a if rng.random() < 0.5 else b, f.name) for f in fields(AgentDesign)
                  if f.name not in ("name", "program")}
        return AgentDesign(name=name, **picked).canonical()
