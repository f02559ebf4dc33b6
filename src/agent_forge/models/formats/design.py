"""The agent design: how a forged model answers, as typed settings saved beside its weights (`design.json`).

A design is the small program the ADAS stage searches over (Hu et al. 2024, "Automated Design of Agentic
Systems"), written as data: each field switches or tunes one block of `agent_forge.inference.design`, and an
optional `program` is a block written as Python source by a meta-agent, which only ever runs in the
sandbox (`agent_forge.sandbox`). `load_agent` restores it as `agent.extensions["design"]` (an `AgentDesign`),
and `inference.answer` then answers through it, so `chat`, `eval` and the server all use the saved design.

    {"format": 1, "name": "self_consistency", "think": false, "votes": 5, "vote_temperature": 0.7, ...}

Fields that name a part the agent lacks (thinking without a thought head, tools without tools) are ignored
where the design is applied, so one design file is meaningful for any agent; `describe()` says what it does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ...errors import ForgeError
from ...utils import atomic_write_text

FILE = "design.json"
FORMAT = 1

TOOL_POLICIES = ("off", "model", "first")  # no tools / the model decides / every answer opens with a call
DISPATCH_MODES = ("auto", "off")  # expert dispatch by the router / base weights only


@dataclass(frozen=True)
class AgentDesign:
    """One agent design; the defaults are the plain agent (greedy, one answer, every extension as trained)."""

    name: str = "plain"
    think: bool = False  # Quiet-STaR thoughts before each answer token (agents with a thought head)
    thought_length: int | None = None  # thought tokens per position; None: the head's own
    temperature: float = 0.0  # of the answer (0: greedy)
    dispatch: str = "auto"  # expert dispatch mode
    dispatch_threshold: float | None = None  # router confidence below which the base answers; None: as trained
    tools: str = "model"  # tool policy
    max_calls: int | None = None  # tool calls per answer; None: as trained
    memory_k: int | None = None  # passages a memory search returns; None: as trained
    votes: int = 1  # self-consistency: answers sampled, the most frequent final answer wins
    vote_temperature: float = 0.7
    refine_below: float | None = None  # self-refine: revise drafts whose self-model confidence is below this
    retry_below: float | None = None  # abstain-and-retry: resample answers whose likelihood is below this
    retries: int = 2
    abstain: bool = False  # after the retries, answer ABSTAIN_TEXT instead of the best attempt
    layers: int | None = None  # early exit: decode with the first N decoder layers only; None: all
    program: str | None = None  # a generated block (Python source, run only in the sandbox)

    def __post_init__(self):
        problems = design_problems(self)
        if problems:
            raise ValueError(f"invalid agent design {self.name!r}: {problems[0]}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AgentDesign":
        if not isinstance(data, dict):
            raise ValueError("an agent design is a JSON object")
        data = dict(data)
        if data.pop("format", FORMAT) != FORMAT:
            raise ValueError(f"unsupported design format (this version reads format {FORMAT})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown design field(s) {', '.join(unknown)}")
        return cls(**data)

    def with_changes(self, **changes) -> "AgentDesign":
        return replace(self, **changes)

    def canonical(self) -> "AgentDesign":
        """The same behaviour with every field that cannot act reset to its default (thought length without
        thinking, the vote temperature when nothing samples, retries without a retry threshold, ...)."""
        plain = AgentDesign()
        changes: dict[str, Any] = {}
        if not self.think:
            changes["thought_length"] = plain.thought_length
        if self.votes == 1 and self.refine_below is None and self.retry_below is None:
            changes["vote_temperature"] = plain.vote_temperature
        if self.votes > 1:
            changes["temperature"] = plain.temperature  # every answer is one of the votes
        if self.retry_below is None:
            changes["retries"], changes["abstain"] = plain.retries, plain.abstain
        if self.dispatch == "off":
            changes["dispatch_threshold"] = plain.dispatch_threshold
        if self.tools == "off":
            changes["max_calls"], changes["memory_k"] = plain.max_calls, plain.memory_k
        return replace(self, **changes)

    def key(self) -> str:
        """Identity of the behaviour (the name left out): designs with equal keys answer identically."""
        data = asdict(self.canonical())
        data.pop("name")
        return json.dumps(data, sort_keys=True)

    def describe(self) -> str:
        """One line: what this design does beyond the plain agent."""
        plain = AgentDesign()
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if f.name not in ("name", "program") and getattr(self, f.name) != getattr(plain, f.name)]
        if self.program:
            parts.append("program=<generated block>")
        return ", ".join(parts) or "plain answer"


def design_problems(design: AgentDesign) -> list[str]:
    """What is wrong with a design's values (empty when valid)."""
    problems = []
    if not isinstance(design.name, str) or not design.name:
        problems.append("name must be a non-empty string")
    if design.tools not in TOOL_POLICIES:
        problems.append(f"tools must be one of {', '.join(TOOL_POLICIES)}")
    if design.dispatch not in DISPATCH_MODES:
        problems.append(f"dispatch must be one of {', '.join(DISPATCH_MODES)}")
    for name in ("temperature", "vote_temperature"):
        value = getattr(design, name)
        if not isinstance(value, (int, float)) or not 0 <= value <= 2:
            problems.append(f"{name} must be in [0, 2]")
    for name, low in (("votes", 1), ("retries", 0)):
        value = getattr(design, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low or value > 32:
            problems.append(f"{name} must be an integer in [{low}, 32]")
    for name in ("thought_length", "max_calls", "memory_k", "layers"):
        value = getattr(design, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{name} must be a positive integer or null")
    for name in ("dispatch_threshold", "refine_below", "retry_below"):
        value = getattr(design, name)
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= 1):
            problems.append(f"{name} must be in [0, 1] or null")
    if design.program is not None and not isinstance(design.program, str):
        problems.append("program must be Python source text or null")
    return problems


def read_design(folder: Path) -> AgentDesign | None:
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        return AgentDesign.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise ForgeError(f"{path} is not a valid agent design ({str(error).splitlines()[0]})") from None


def write_design(design: AgentDesign, folder: Path) -> None:
    atomic_write_text(Path(folder) / FILE, json.dumps(design.to_dict(), indent=2) + "\n")


class DesignExtension:
    """`design.json` <-> `agent.extensions["design"]`."""

    name = "design"

    def restore(self, agent, folder: Path) -> None:
        design = read_design(folder)
        if design is not None:
            agent.extensions[self.name] = design

    def prepare_save(self, agent) -> None:
        return None

    def write(self, agent, folder: Path) -> None:
        design = agent.extensions.get(self.name)
        if design is not None:
            write_design(design, folder)
