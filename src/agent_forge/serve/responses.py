"""The response objects of the OpenAI API as plain dicts, and server-sent-event framing.

Exercise: `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

DONE = "data: [DONE]\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(data: dict[str, Any]) -> str:
    """One server-sent event carrying `data` as compact JSON."""
    return f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def chat_message(content: str | None, *, tool_calls: list | None = None, reasoning: str | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return message


def chat_completion(request_id: str, created: int, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": request_id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage_}


def chat_chunk(request_id: str, created: int, model: str, choices: list[dict], *, with_usage: bool = False,
               usage_: dict | None = None) -> dict:
    chunk = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": choices}
    if with_usage:
        chunk["usage"] = usage_  # null on every chunk but the last, as OpenAI sends it
    return chunk


def chunk_choice(index: int, delta: dict, finish_reason: str | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def text_completion(request_id: str, created: int, model: str, choices: list[dict], usage_: dict | None) -> dict:
    """A completion, or (with `usage_` None) one streamed chunk of it."""
    return {"id": request_id, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": usage_}


def text_choice(index: int, text: str, finish_reason: str | None) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "agent-forge"}
