"""Tool calls between the model's text and the OpenAI shape.

The model's convention is Hermes-style: a call is written as
`<tool_call>{"name": "get_time", "arguments": {...}}</tool_call>` (several may follow each other). When a
request declares tools, calls to those tools found in the answer come back as OpenAI `tool_calls`
(`arguments` as a JSON string) with `finish_reason: "tool_calls"`, and the text before the first call as the
content. A call that is not valid JSON, or names a tool the request did not declare, stays text.

Tools reach the model through the chat template's `tools=` when the template renders them, otherwise through
`tools_preamble` (a system text listing them and the call convention).

Exercise: `pytest tests/serve/test_tools.py`.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any, Iterable

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_CALL = re.compile(re.escape(TOOL_CALL_OPEN) + r"\s*(.*?)\s*(?:" + re.escape(TOOL_CALL_CLOSE) + r"|$)", re.DOTALL)


def tools_preamble(tools: list[dict[str, Any]]) -> str:
    """A system text declaring `tools` (OpenAI tool definitions) and how to call them, for plain prompts."""
    listed = "\n".join(json.dumps(t.get("function", t), separators=(",", ":"), sort_keys=True) for t in tools)
    return (
        f"you may call these tools:\n<tools>\n{listed}\n</tools>\n"
        f'to call one, answer {TOOL_CALL_OPEN}{{"name":<name>,"arguments":<json object>}}{TOOL_CALL_CLOSE}\n'
    )


def tool_call_markup(name: str, arguments: Any) -> str:
    """How a call is written in the model's text (used to render earlier assistant calls into the prompt)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            pass
    body = json.dumps({"name": name, "arguments": arguments}, separators=(",", ":"))
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def parse_tool_calls(text: str, declared: Iterable[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """(content before the first call or None, OpenAI tool calls) for calls to the `declared` tool names."""
    names = set(declared)
    calls = []
    for match in _CALL.finditer(text):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("name") not in names:
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append({
            "id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": data["name"], "arguments": arguments},
        })
    if not calls:
        return text, []
    content = text[: text.index(TOOL_CALL_OPEN)]
    return (content if content.strip() else None), calls
