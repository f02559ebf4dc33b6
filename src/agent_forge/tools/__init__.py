"""Tools the agent calls while answering: the call format, a registry of typed tools, the calculator, and the
answer hook that executes calls inside the generation loop.

A layer of its own before `models` (it imports nothing else of the package): `inference` uses it through the
`ToolUse` hook, `models.formats.tools` restores the enabled tools of an agent folder (`tools.json`), and the
server converts calls with `to_openai_tool_calls`.

Exercise: `pytest tests/tools`.
"""

from .calculator import CalculatorError, calculate, calculator, format_number
from .calls import (
    MAX_CALL_CHARS, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, CallError, ToolCall,
    from_openai_tool_calls, parse_call_body, parse_tool_calls, pending_call, render_call, render_response,
    split_calls, to_openai_tool_calls, tool_error,
)
from .registry import BUILTIN, Tool, ToolRegistry, builtin_registry, default_registry
from .use import ToolUse, called_tool, final_answer

__all__ = [
    "BUILTIN", "builtin_registry", "MAX_CALL_CHARS", "TOOL_CALL_CLOSE", "TOOL_CALL_OPEN", "TOOL_RESPONSE_CLOSE", "TOOL_RESPONSE_OPEN",
    "CalculatorError", "CallError", "Tool", "ToolCall", "ToolRegistry", "ToolUse", "calculate", "calculator",
    "called_tool", "default_registry", "final_answer", "format_number", "from_openai_tool_calls",
    "parse_call_body", "parse_tool_calls", "pending_call", "render_call", "render_response", "split_calls",
    "to_openai_tool_calls", "tool_error",
]
