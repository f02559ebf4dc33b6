"""The tool-call format in the model's text, its parser, and the one-to-one conversion to OpenAI `tool_calls`.

Hermes-style: the model writes `<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>`
and the runtime appends `<tool_response>5</tool_response>`, after which generation continues. The parser never
raises: whatever the text, each `<tool_call>` segment becomes a `ToolCall` or a `CallError` (truncated or
invalid JSON, wrong shape), and a `CallError`'s message is what the model is shown as the tool's response.

`to_openai_tool_calls(calls)` gives the chat-completions shape (`arguments` as a JSON string);
`from_openai_tool_calls` goes back; `render_call` writes a call in the model's convention.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"
MAX_CALL_CHARS = 4096  # a call body longer than this is refused before JSON parsing


@dataclass(frozen=True)
class ToolCall:
    """One well-formed call: the tool's name and its arguments (a JSON object)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    closed: bool = True  # False: the text ended (or a stop string cut it) before `</tool_call>`


@dataclass(frozen=True)
class CallError:
    """A `<tool_call>` segment that is not a usable call; `message` is returned to the model as the response."""

    message: str
    raw: str = ""
    closed: bool = True


def tool_error(message: str) -> str:
    """The text a failed call returns to the model (one line)."""
    return "error: " + " ".join(str(message).split())[:300]


def render_call(name: str, arguments: Any = None) -> str:
    """A call as the model writes it (compact JSON); `arguments` may be a dict or a JSON string."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            pass
    body = json.dumps({"name": name, "arguments": arguments if arguments is not None else {}},
                      separators=(",", ":"), ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def render_response(result: str) -> str:
    """A tool's result as appended to the model's text."""
    return f"{TOOL_RESPONSE_OPEN}{result}{TOOL_RESPONSE_CLOSE}"


def parse_call_body(body: Any, *, closed: bool = True) -> ToolCall | CallError:
    """One call's JSON body -> `ToolCall`, or `CallError` for anything else. Never raises."""
    try:
        if not isinstance(body, str):
            return CallError(f"tool call must be text, got {type(body).__name__}", closed=closed)
        raw = body.strip()
        if not raw:
            return CallError("empty tool call", raw, closed)
        if len(raw) > MAX_CALL_CHARS:
            return CallError(f"tool call longer than {MAX_CALL_CHARS} characters", raw[:80], closed)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            why = "truncated tool call" if not closed else "tool call is not valid JSON"
            return CallError(f"{why}: {str(error)[:120]}", raw[:200], closed)
        if not isinstance(data, dict):
            return CallError("tool call must be a JSON object with name and arguments", raw[:200], closed)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            return CallError("tool call needs a string name", raw[:200], closed)
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):  # OpenAI style: arguments as a JSON string
            try:
                arguments = json.loads(arguments or "{}")
            except (ValueError, RecursionError):
                return CallError(f"arguments of {name[:40]} are not valid JSON", raw[:200], closed)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return CallError(f"arguments of {name[:40]} must be a JSON object", raw[:200], closed)
        return ToolCall(name, arguments, closed)
    except Exception as error:  # pragma: no cover - a last guard: the parser never raises
        return CallError(f"unreadable tool call ({type(error).__name__})", closed=closed)


def parse_tool_calls(text: Any) -> list[ToolCall | CallError]:
    """Every `<tool_call>` segment of `text`, in order; an unterminated last one is parsed with `closed=False`."""
    if not isinstance(text, str):
        return [CallError(f"tool call text must be a string, got {type(text).__name__}")]
    found: list[ToolCall | CallError] = []
    position = 0
    while True:
        start = text.find(TOOL_CALL_OPEN, position)
        if start < 0:
            return found
        body_start = start + len(TOOL_CALL_OPEN)
        end = text.find(TOOL_CALL_CLOSE, body_start)
        if end < 0:
            found.append(parse_call_body(text[body_start:], closed=False))
            return found
        found.append(parse_call_body(text[body_start:end]))
        position = end + len(TOOL_CALL_CLOSE)


def pending_call(text: Any) -> ToolCall | CallError | None:
    """The call the runtime has to answer: the last `<tool_call>` after the last `<tool_response>`, if any."""
    if not isinstance(text, str):
        return CallError("tool call text must be a string")
    answered = text.rfind(TOOL_RESPONSE_CLOSE)
    tail = text[answered + len(TOOL_RESPONSE_CLOSE):] if answered >= 0 else text
    calls = parse_tool_calls(tail)
    return calls[-1] if calls else None


def to_openai_tool_calls(calls: Iterable[ToolCall], *, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """OpenAI chat-completions `tool_calls` for `calls`, one entry per call, in order."""
    given = iter(ids) if ids is not None else None
    out = []
    for call in calls:
        call_id = next(given) if given is not None else f"call_{secrets.token_hex(12)}"
        out.append({
            "id": call_id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        })
    return out


def from_openai_tool_calls(tool_calls: Iterable[dict[str, Any]]) -> list[ToolCall | CallError]:
    """The inverse of `to_openai_tool_calls` (ids are dropped); malformed entries become `CallError`."""
    out: list[ToolCall | CallError] = []
    for entry in tool_calls:
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(function, dict):
            out.append(CallError("tool call entry without a function"))
            continue
        out.append(parse_call_body(json.dumps({"name": function.get("name"),
                                               "arguments": function.get("arguments", "{}")})))
    return out


def split_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """(content before the first call or None, the well-formed calls): what a server returns as a message."""
    calls = [c for c in parse_tool_calls(text) if isinstance(c, ToolCall)]
    if not calls:
        return text, []
    content = text[: text.index(TOOL_CALL_OPEN)]
    return (content if content.strip() else None), calls
