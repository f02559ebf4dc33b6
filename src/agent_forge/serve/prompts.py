"""A chat request's messages (and declared tools) -> the prompt text and token ids the model continues.

With a chat template (real models) the template renders the conversation, with `tools=` when it knows what to
do with them; a template that ignores `tools` gets them as a system text (`tools.tools_preamble`) instead.
Without a template (the tiny profile) the text follows the format the agent was trained on
(`models.prompt_format`): each user or system turn is its text and a newline, each assistant turn its text and
the terminator (tool calls written in the model's `<tool_call>` convention), each tool result
`<tool_response>...</tool_response>` and a newline, so a single user message renders exactly as
`prompt_format(tokenizer).render(message)`.

Tools reach the model through the chat template's `tools=` when the template renders them, otherwise through
`tools_preamble` (a system text listing them and the call convention of `agent_forge.tools.calls`).

Exercise: `pytest tests/serve/test_tools.py`.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from ..models import prompt_format
from ..tools import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TOOL_RESPONSE_CLOSE, TOOL_RESPONSE_OPEN, render_call
from .errors import APIError
from .protocol import ChatMessage


def tools_preamble(tools: list[dict[str, Any]]) -> str:
    """A system text declaring `tools` (OpenAI tool definitions) and how to call them, for plain prompts."""
    listed = "\n".join(json.dumps(t.get("function", t), separators=(",", ":"), sort_keys=True) for t in tools)
    return (
        f"you may call these tools:\n<tools>\n{listed}\n</tools>\n"
        f'to call one, answer {TOOL_CALL_OPEN}{{"name":<name>,"arguments":<json object>}}{TOOL_CALL_CLOSE}\n'
    )


def message_text(message: ChatMessage) -> str:
    """The text of a message's content (a string, or the text parts of a list); 400 for other parts."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise APIError(400, f"content parts of type {part.type!r} are not supported (text only)",
                           param="messages", code="unsupported_content")
        texts.append(part.text)
    return "".join(texts)


def render_chat(tokenizer, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text for `messages` (and `tools`, or None), ending where the assistant's answer begins."""
    if getattr(tokenizer, "chat_template", None):
        return _render_template(tokenizer, messages, tools)
    return _render_plain(tokenizer, messages, tools)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt, as generation feeds them (the tokenizer's own specials where it adds them)."""
    return prompt_format(tokenizer).encode_prompts([text], render=False)[0]


def _render_plain(tokenizer, messages: Sequence[ChatMessage], tools) -> str:
    terminator = prompt_format(tokenizer).terminator_text
    parts = [tools_preamble(tools)] if tools else []
    for message in messages:
        text = message_text(message)
        if message.role == "assistant":
            calls = "".join(render_call(c.function.name, c.function.arguments) for c in message.tool_calls or [])
            parts.append(text + calls + terminator)
        elif message.role == "tool":
            parts.append(f"{TOOL_RESPONSE_OPEN}{text}{TOOL_RESPONSE_CLOSE}\n")
        else:
            parts.append(text + "\n")
    return "".join(parts)


def _template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    rendered = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role, "content": message_text(message)}
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except ValueError:
                    arguments = call.function.arguments
                calls.append({"type": "function", "id": call.id, "function": {"name": call.function.name,
                                                                               "arguments": arguments}})
            entry["tool_calls"] = calls
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        if message.name:
            entry["name"] = message.name
        rendered.append(entry)
    return rendered


def _render_template(tokenizer, messages: Sequence[ChatMessage], tools) -> str:
    entries = _template_messages(messages)

    def apply(conversation, **kwargs) -> str:
        try:
            return tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False, **kwargs)
        except Exception as exc:  # templates raise on conversations they do not accept (role order, ...)
            raise APIError(400, f"the model's chat template rejected these messages: {exc}", param="messages",
                           code="invalid_messages") from None

    if not tools:
        return apply(entries)
    with_tools = apply(entries, tools=tools)
    if with_tools != apply(entries):
        return with_tools
    # the template ignores tools: declare them in a system message of our own
    preamble = tools_preamble(tools)
    if entries and entries[0]["role"] == "system":
        entries[0] = {**entries[0], "content": preamble + entries[0]["content"]}
    else:
        entries.insert(0, {"role": "system", "content": preamble.rstrip("\n")})
    return apply(entries)
