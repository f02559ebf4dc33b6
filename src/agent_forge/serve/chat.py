"""`POST /v1/chat/completions`: messages (and tools) in, an assistant message (or a stream of chunks) out.

Thoughts stay hidden unless the request says `include_reasoning: true`; then a thinking agent's thoughts come
back as `reasoning_content` (in the message, or in a delta before the content when streaming). Declared tools
are rendered into the prompt (`prompts.py`) and calls to them come back as `tool_calls` (`tools.py`); while
streaming, text from a `<tool_call>` on is held back and sent as `tool_calls` deltas at the end.

Exercise: `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

from typing import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse

from . import responses as R
from .engine import SamplingParams
from .errors import APIError
from .generation import Generation, GenerationStream, plan_max_tokens
from .prompts import encode_prompt, render_chat
from .protocol import ChatCompletionRequest, parse_body
from .state import ServerState
from .tools import TOOL_CALL_OPEN, parse_tool_calls


async def chat_completions(request: Request, state: ServerState):
    engine = state.ready_engine()
    body: ChatCompletionRequest = await parse_body(request, ChatCompletionRequest)
    state.check_model(body.model)
    body.refuse_unsupported()
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools and body.tool_choice != "none" else None
    text = render_chat(engine.tokenizer, body.messages, tools)
    ids = encode_prompt(engine.tokenizer, text)
    param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    params = SamplingParams(
        max_tokens=plan_max_tokens(state, [len(ids)], body.requested_max_tokens, param, "messages"),
        temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stop_strings(),
        think=engine.agent.thinks and body.think is not False, hold_from=TOOL_CALL_OPEN if tools else None,
    )
    generation = Generation.start(state, "chat", [(ids, text)], params, body.n, streaming=body.stream)
    declared = [t["function"]["name"] for t in tools or []]
    if body.stream:
        return GenerationStream(_stream(generation, body, state.model_name, declared), generation)
    try:
        return JSONResponse(await _complete(generation, body, state.model_name, declared))
    finally:
        generation.close()


async def _complete(generation: Generation, body: ChatCompletionRequest, model: str, declared: list[str]) -> dict:
    done = {}
    async for event in generation.events():
        if event.kind == "done":
            done[event.index] = event
    choices = []
    for index in sorted(done):
        event = done[index]
        content, calls = parse_tool_calls(event.full_text, declared) if declared else (event.full_text, [])
        reasoning = "\n".join(event.thoughts) if body.include_reasoning else None
        choices.append({
            "index": index, "message": R.chat_message(content, tool_calls=calls, reasoning=reasoning),
            "logprobs": None, "finish_reason": "tool_calls" if calls else event.finish_reason,
        })
    return R.chat_completion(R.new_id("chatcmpl"), R.now(), model, choices,
                             R.usage(generation.prompt_tokens, generation.completion_tokens))


async def _stream(generation: Generation, body: ChatCompletionRequest, model: str,
                  declared: list[str]) -> AsyncIterator[str]:
    request_id, created, with_usage = R.new_id("chatcmpl"), R.now(), body.include_usage

    def chunk(index: int, delta: dict, finish_reason: str | None = None) -> str:
        return R.sse(R.chat_chunk(request_id, created, model, [R.chunk_choice(index, delta, finish_reason)],
                                  with_usage=with_usage))

    sent: dict[int, str] = {}
    try:
        for seq in generation.sequences:
            sent[seq.index] = ""
            yield chunk(seq.index, {"role": "assistant", "content": ""})
        async for event in generation.events():
            if event.kind == "delta":
                if event.thoughts and body.include_reasoning:
                    yield chunk(event.index, {"reasoning_content": "\n".join(event.thoughts)})
                if event.text:
                    sent[event.index] += event.text
                    yield chunk(event.index, {"content": event.text})
                continue
            content, calls = parse_tool_calls(event.full_text, declared) if declared else (event.full_text, [])
            if calls:
                yield chunk(event.index, {"tool_calls": [{"index": k, **call} for k, call in enumerate(calls)]})
            else:
                rest = event.full_text[len(sent[event.index]):]  # held text that turned out not to be a call
                if rest:
                    yield chunk(event.index, {"content": rest})
            yield chunk(event.index, {}, "tool_calls" if calls else event.finish_reason)
        if with_usage:
            yield R.sse(R.chat_chunk(request_id, created, model, [], with_usage=True,
                                     usage_=R.usage(generation.prompt_tokens, generation.completion_tokens)))
    except APIError as error:
        yield R.sse(error.body())
    yield R.DONE
