"""The rows of the interaction log: one `Interaction` per answered request, `Feedback` on it, `CanaryRun`s.

An `Interaction` is what a later learner (`agent-forge learn`) reads: the prompt (the last user message for
chat, the prompt text for completions; the whole conversation beside it), the visible answer, the hidden thoughts, the tool
calls with the results the runtime appended, the expert that answered and the confidence, latency, model
version and token counts, and (when the prompt is a task of a known domain) the reference answer and the
verifier's score. `tool_trace(text)` reads the calls and results out of an answer's text.

Exercise: `pytest tests/interactions/test_log.py`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..tools import TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, ToolCall, parse_tool_calls


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


@dataclass
class Interaction:
    response_id: str
    endpoint: str  # "chat" | "completions"
    model: str
    model_version: str
    status: int = 200  # the HTTP status the request ended with (408/500 rows carry `error`)
    prompt: str = ""
    answer: str | None = None  # choice 0's visible text (tool markup and results included, as generated)
    thoughts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments", "result"}
    expert: str | None = None
    confidence: float | None = None  # router confidence (experts) or the mean probability of the emitted tokens
    latency_ms: float = 0.0  # request received -> answer complete (before the log write)
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    domain: str | None = None  # the task domain the prompt was recognised as
    reference: str | None = None  # the reference answer computed from the prompt
    verified: float | None = None  # the verifier's score of the answer (None: no verifier applies)
    choices: list[dict[str, Any]] = field(default_factory=list)  # every choice when n > 1
    conversation: list[dict[str, Any]] = field(default_factory=list)  # the chat messages / completion prompts
    error: str | None = None
    created: float = field(default_factory=time.time)

    JSON_FIELDS = ("thoughts", "tool_calls", "choices", "conversation")

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        for name in self.JSON_FIELDS:
            out[name] = json.dumps(out[name], ensure_ascii=False)
        out["tool_names"] = ",".join(c.get("name") or "" for c in self.tool_calls)
        return out

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)] + ["tool_names"]


@dataclass
class Feedback:
    response_id: str
    rating: int | None = None  # +1 thumbs up, -1 thumbs down, None: a correction or comment only
    correction: str | None = None
    comment: str | None = None
    correction_verified: float | None = None  # the verifier's score of the correction, where one applies
    feedback_id: str = field(default_factory=lambda: new_id("fb"))
    created: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class CanaryRun:
    model_version: str
    trigger: str  # "start" | "schedule" | "promotion" (a version the canary had not seen before)
    accuracy: float  # percent
    n: int
    by_domain: dict[str, float] = field(default_factory=dict)
    reference: float | None = None  # the accuracy it was compared with (best of the window before it)
    falling: bool = False
    run_id: str = field(default_factory=lambda: new_id("canary"))
    created: float = field(default_factory=time.time)

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["by_domain"] = json.dumps(self.by_domain, sort_keys=True)
        out["falling"] = int(self.falling)
        return out

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def tool_trace(text: str) -> list[dict[str, Any]]:
    """The tool calls written in an answer, each with the result the runtime appended after it (or None)."""
    trace: list[dict[str, Any]] = []
    for i, segment in enumerate((text or "").split(TOOL_RESPONSE_OPEN)):
        if i:  # "<result></tool_response>text after it"
            result, closed, segment = segment.partition(TOOL_RESPONSE_CLOSE)
            if trace and trace[-1]["result"] is None:
                trace[-1]["result"] = result
            if not closed:
                continue
        for call in parse_tool_calls(segment):
            if isinstance(call, ToolCall):
                trace.append({"name": call.name, "arguments": call.arguments, "result": None})
            else:
                trace.append({"name": None, "arguments": None, "error": call.message, "result": None})
    return trace
