"""A conversation with tool calls and tool results, rendered as the text a model is trained on or continues.

Messages have the OpenAI chat shape: `{"role": "system"|"user"|"assistant"|"tool", "content": ...}`, an
assistant message may carry `tool_calls` (`to_openai_tool_calls`' shape; `arguments` a JSON string or an
object), a tool message answers one call (`tool_call_id` optional: without ids, results answer calls in order).
`tools` is a `ToolRegistry` or a list of OpenAI tool definitions.

Two renderings, chosen by the tokenizer:
- native: its chat template renders `tools=`, assistant `tool_calls` and role "tool" messages in the Hermes form
  `calls.parse_tool_calls` reads back (`template_renders_tools` checks this once per template by rendering a
  probe conversation and parsing it);
- inline, the project's convention everywhere else (a template without tool support, such as SmolLM2's, or no
  template at all, the tiny tokenizers): an assistant's calls and their results are written into the assistant's
  own text, `<tool_call>{...}</tool_call><tool_response>...</tool_response>` and then its next words, which is
  exactly the text `ToolUse` produces while the model answers; the tool definitions go into the system message.
  With a template the rewritten messages go through it; without one, the plain format of `models.prompt_format`
  (each system or user text plus "\\n", each assistant text plus the eos token).
A conversation that ends on tool results is left open for the model to go on (inline: inside the assistant's
turn; native: with the template's generation prompt).

    text = render_conversation(tokenizer, messages, tools=registry)
    parse_tool_calls(text)   # the conversation's calls again

Exercise: `pytest tests/tools/test_chat_format.py`.
"""

from __future__ import annotations

import json
from typing import Any

from .calls import CallError, ToolCall, from_openai_tool_calls, parse_tool_calls, render_call, render_response

ROLES = ("system", "user", "assistant", "tool")
# No literal tag in the instructions: the parser would read it as a (broken) call of the conversation.
TOOLS_PREAMBLE = ("You can call these tools (JSON schemas, one per line):\n<tools>\n{schemas}\n</tools>\n"
                  'To call one, write {{"name": ..., "arguments": {{...}}}} between tool_call tags; its result comes '
                  "back between tool_response tags.")
_PROBE_TOOL = "probe_tool_4c1d"
_PROBE_ARGUMENTS = {"probe_argument": "probe_value_93a7"}
_PROBE_RESULT = "probe_result_e52b"
_PROBE_DESCRIPTION = "probe_description_18f0"
_native_cache: dict[str, bool] = {}


def tool_definitions(tools: Any) -> list[dict[str, Any]]:
    """OpenAI tool definitions from a `ToolRegistry` or a list of definitions (each checked for a function name)."""
    if tools is None:
        return []
    if hasattr(tools, "schemas"):
        return tools.schemas()
    if not isinstance(tools, (list, tuple)):
        raise ValueError(f"tools must be a ToolRegistry or a list of tool definitions, got {type(tools).__name__}")
    for number, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f"tool definition {number} needs a function with a name (OpenAI shape)")
    return list(tools)


def _calls_of(message: dict[str, Any], number: int) -> list[ToolCall]:
    entries = message.get("tool_calls") or []
    if not isinstance(entries, list):
        raise ValueError(f"message {number}: tool_calls must be a list")
    calls = from_openai_tool_calls(entries)
    for call in calls:
        if isinstance(call, CallError):
            raise ValueError(f"message {number}: bad tool call: {call.message}")
    return calls


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """The messages, or ValueError (one line) naming the first bad one."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    pending = 0  # calls of the last assistant message not yet answered by a tool message
    for number, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {number} is a {type(message).__name__}, not a dict")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"message {number}: role must be one of {', '.join(ROLES)}, got {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"message {number}: content must be a string or null")
        if role == "tool":
            if pending == 0:
                raise ValueError(f"message {number}: a tool result without an unanswered assistant tool call before it")
            pending -= 1
        elif role == "assistant":
            if pending:
                raise ValueError(f"message {number}: {pending} tool call(s) of the previous assistant message have no result")
            pending = len(_calls_of(message, number))
            if content is None and not pending:
                raise ValueError(f"message {number}: an assistant message needs content or tool_calls")
        else:
            if pending:
                raise ValueError(f"message {number}: {pending} tool call(s) of the previous assistant message have no result")
            if content is None:
                raise ValueError(f"message {number}: a {role} message needs content")
    return list(messages)


def _results_in_call_order(message: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """The tool results of one assistant message, matched to its calls by id where every result has one."""
    ids = [entry.get("id") for entry in message.get("tool_calls") or []]
    result_ids = [result.get("tool_call_id") for result in results]
    if all(result_ids) and set(result_ids) <= set(ids):
        by_id = {result["tool_call_id"]: result.get("content") or "" for result in results}
        answered = [by_id[i] for i in ids if i in by_id]
        if [i for i in ids if i in by_id] != ids[:len(answered)]:
            raise ValueError("a tool call without a result comes before one with a result")
        return answered
    return [result.get("content") or "" for result in results]


def inline_messages(messages: list[dict[str, Any]], tools: Any = None) -> tuple[list[dict[str, Any]], bool]:
    """(plain messages in the project's convention, whether the last assistant turn is left open).

    Each assistant message with calls, its tool results and the assistant messages that continue it become one
    assistant message: content, then per call `render_call` and its `render_response`, then the next content.
    """
    messages = check_messages(messages)
    definitions = tool_definitions(tools)
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        if message["role"] != "assistant":
            out.append({"role": message["role"], "content": message["content"]})
            i += 1
            continue
        text = ""
        while i < len(messages) and messages[i]["role"] == "assistant":
            message = messages[i]
            calls = _calls_of(message, i)
            results = []
            i += 1
            while i < len(messages) and messages[i]["role"] == "tool":
                results.append(messages[i])
                i += 1
            answered = _results_in_call_order(message, results)
            text += message.get("content") or ""
            for number, call in enumerate(calls):
                text += render_call(call.name, call.arguments)
                if number < len(answered):
                    text += render_response(answered[number])
            if len(answered) < len(calls):  # only at the end (check_messages): the runtime answers next
                break
        out.append({"role": "assistant", "content": text})
    last = messages[-1]
    open_turn = last["role"] == "tool" or (last["role"] == "assistant" and bool(last.get("tool_calls")))
    if definitions:
        block = TOOLS_PREAMBLE.format(schemas="\n".join(json.dumps(d, ensure_ascii=False) for d in definitions))
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{block}"}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out, open_turn


def _native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a template: call arguments as objects (what templates expect to `tojson`)."""
    out = []
    for number, message in enumerate(messages):
        message = dict(message)
        if message["role"] == "assistant" and message.get("tool_calls"):
            calls = _calls_of(message, number)
            message["tool_calls"] = [
                {**({"id": entry["id"]} if entry.get("id") else {}), "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments}}
                for entry, call in zip(message["tool_calls"], calls)
            ]
        out.append(message)
    return out


def template_renders_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders tool definitions, calls (parseable by `parse_tool_calls`)
    and tool results; cached per template text."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return False
    key = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    if key not in _native_cache:
        probe = [
            {"role": "user", "content": "probe"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_probe", "type": "function", "function": {"name": _PROBE_TOOL, "arguments": _PROBE_ARGUMENTS}}]},
            {"role": "tool", "tool_call_id": "call_probe", "content": _PROBE_RESULT},
        ]
        schema = {"type": "function", "function": {"name": _PROBE_TOOL, "description": _PROBE_DESCRIPTION,
                                                   "parameters": {"type": "object", "properties": {}}}}
        try:
            text = tokenizer.apply_chat_template(probe, tools=[schema], tokenize=False)
        except Exception:  # a template that rejects these roles or fields has no tool support
            text = ""
        calls = [c for c in parse_tool_calls(text) if isinstance(c, ToolCall)]
        _native_cache[key] = (ToolCall(_PROBE_TOOL, _PROBE_ARGUMENTS) in calls and _PROBE_RESULT in text
                              and _PROBE_DESCRIPTION in text)
    return _native_cache[key]


def _plain(messages: list[dict[str, Any]], eos: str, open_turn: bool) -> str:
    parts = []
    for number, message in enumerate(messages):
        if message["role"] == "assistant":
            last = number == len(messages) - 1
            parts.append(message["content"] + ("" if last and open_turn else eos))
        else:
            parts.append(message["content"] + "\n")
    return "".join(parts)


def render_conversation(tokenizer, messages: list[dict[str, Any]], *, tools: Any = None,
                        add_generation_prompt: bool = False) -> str:
    """The conversation as text (see the module docstring); ValueError for malformed messages or tools."""
    messages = check_messages(messages)
    definitions = tool_definitions(tools)
    if template_renders_tools(tokenizer):
        ends_on_results = messages[-1]["role"] == "tool"
        return tokenizer.apply_chat_template(_native_messages(messages), tools=definitions or None, tokenize=False,
                                             add_generation_prompt=add_generation_prompt or ends_on_results)
    plain, open_turn = inline_messages(messages, definitions)
    if not getattr(tokenizer, "chat_template", None):
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a chat template nor an eos token to end assistant turns")
        return _plain(plain, tokenizer.eos_token, open_turn)
    if open_turn:  # what generation sees: the turns before, the generation prompt, then the assistant's text so far
        head = tokenizer.apply_chat_template(plain[:-1], tokenize=False, add_generation_prompt=True)
        return head + plain[-1]["content"]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt)
