"""Tool execution inside the generation loop: the `ToolUse` answer hook.

`inference.answer` calls `continue_after(agent, prompt, text)` after each generation; when the text ends in a
call that has no response yet, `ToolUse` executes it and returns the `<tool_response>...</tool_response>` to
append, and generation continues after it. A call cut before `</tool_call>` (a stop string, or the token budget)
is closed first. At most `max_calls` calls per answer (counted from the responses already in the text, so the
hook holds no per-answer state); a bad call costs one of them and is answered with a tool error.

    answer(agent, ["what is 12*34?"], hooks=[ToolUse(default_registry())])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .calls import TOOL_CALL_CLOSE, TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, pending_call, render_response
from .registry import ToolRegistry, default_registry


@dataclass
class ToolUse:
    registry: ToolRegistry = field(default_factory=default_registry)
    max_calls: int = 4
    calls: list[tuple[Any, str]] = field(default_factory=list)  # (call, result) in execution order, for reports
    memory_path: str | None = None  # the memory store the memory tools open (written to tools.json)
    memory_k: int = 5  # passages `memory_search` returns when the call names no k (written to tools.json)
    # generation pauses where a call ends, so that the runtime answers it before the model goes on
    stop_strings = (TOOL_CALL_CLOSE,)

    def continue_after(self, agent: Any, prompt: str, text: str) -> str | None:
        try:
            if not isinstance(text, str) or text.count(TOOL_RESPONSE_OPEN) >= self.max_calls:
                return None
            call = pending_call(text)
            if call is None:
                return None
            result = self.registry.execute(call)
            self.calls.append((call, result))
            return ("" if call.closed else TOOL_CALL_CLOSE) + render_response(result)
        except Exception:  # pragma: no cover - nothing raises out of the generation loop
            return None


def final_answer(text: str) -> str:
    """The part of an answer after its last tool response (what a verifier scores)."""
    cut = text.rfind(TOOL_RESPONSE_CLOSE)
    return text[cut + len(TOOL_RESPONSE_CLOSE):] if cut >= 0 else text


def called_tool(text: str) -> bool:
    """Whether an answer contains a tool call (the per-domain share of tool use in reports)."""
    from .calls import TOOL_CALL_OPEN

    return TOOL_CALL_OPEN in text
