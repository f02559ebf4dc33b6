"""`POST /v1/chat/completions`: messages (and tools) in, an assistant message (or a stream of chunks) out.

Thoughts stay hidden unless the request says `include_reasoning: true`; then a thinking agent's thoughts come
back as `reasoning_content` (in the message, or in a delta before the content when streaming). Declared tools
are rendered into the prompt (`prompts.py`) and calls to them come back as `tool_calls` (`declared_calls`:
`agent_forge.tools.calls` parses the model's Hermes-style markup and converts it); while streaming, text from a
`<tool_call>` on is held back and sent as `tool_calls` deltas at the end. A call that is not valid JSON, or
names a tool the request did not declare, stays text.

Every answered request is written to the interaction log (`recording.py`) under the response's id before the
body (or, streaming, the final usage chunk and `data: [DONE]`) is sent.

Exercise: `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterable

from fastapi import Request
from fastapi.responses import JSONResponse

from ..tools import TOOL_CALL_OPEN, ToolCall, parse_tool_calls, to_openai_tool_calls
from . import responses as R
from .engine import Event, SamplingParams
from .errors import APIError
from .generation import Generation, GenerationStream, plan_max_tokens
from .prompts import encode_prompt, message_text, render_chat
from .protocol import ChatCompletionRequest, parse_body
from .recording import record
from .state import ServerState


def declared_calls(text: str, declared: Iterable[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """(content before the first call or None, OpenAI `tool_calls`) for the well-formed calls to `declared` tools."""
    names = set(declared)
    calls = [c for c in parse_tool_calls(text) if isinstance(c, ToolCall) and c.name in names]
    if not calls:
        return text, []
    content = text[: text.index(TOOL_CALL_OPEN)]
    return (content if content.strip() else None), to_openai_tool_calls(calls)


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
    generation = Generation.start(state, "chat", [(ids, text)], params, body.n, streaming=body.stream,
                                  engine=engine)
    declared = [t["function"]["name"] for t in tools or []]
    entry = _Entry(state, generation, body)
    if body.stream:
        return GenerationStream(_stream(entry, body, state.model_name, declared), generation)
    try:
        return JSONResponse(await _complete(entry, body, state.model_name, declared))
    finally:
        generation.close()


class _Entry:
    """What the interaction log needs of one chat request besides its events."""

    def __init__(self, state: ServerState, generation: Generation, body: ChatCompletionRequest):
        self.state, self.generation = state, generation
        self.response_id = R.new_id("chatcmpl")
        users = [m for m in body.messages if m.role == "user"]
        self.prompt = message_text(users[-1]) if users else ""
        self.conversation = [m.model_dump(exclude_none=True) for m in body.messages]

    async def record(self, done: dict[int, Event], returned: dict[int, list], error: APIError | None = None) -> None:
        try:
            await record(self.state, self.generation, response_id=self.response_id, prompt=self.prompt,
                         conversation=self.conversation, done=done, returned_calls=returned, error=error)
        except APIError:
            self.generation.status = 503
            raise


async def _complete(entry: _Entry, body: ChatCompletionRequest, model: str, declared: list[str]) -> dict:
    done: dict[int, Event] = {}
    try:
        async for event in entry.generation.events():
            if event.kind == "done":
                done[event.index] = event
    except APIError as error:
        await entry.record(done, {}, error)
        raise
    choices, returned = [], {}
    for index in sorted(done):
        event = done[index]
        content, calls = declared_calls(event.full_text, declared) if declared else (event.full_text, [])
        returned[index] = calls
        reasoning = "\n".join(event.thoughts) if body.include_reasoning else None
        choices.append({
            "index": index, "message": R.chat_message(content, tool_calls=calls, reasoning=reasoning),
            "logprobs": None, "finish_reason": "tool_calls" if calls else event.finish_reason,
        })
    await entry.record(done, returned)  # committed before the body goes out
    generation = entry.generation
    return R.chat_completion(entry.response_id, R.now(), model, choices,
                             R.usage(generation.prompt_tokens, generation.completion_tokens))


async def _stream(entry: _Entry, body: ChatCompletionRequest, model: str, declared: list[str]) -> AsyncIterator[str]:
    generation = entry.generation
    request_id, created, with_usage = entry.response_id, R.now(), body.include_usage

    def chunk(index: int, delta: dict, finish_reason: str | None = None) -> str:
        return R.sse(R.chat_chunk(request_id, created, model, [R.chunk_choice(index, delta, finish_reason)],
                                  with_usage=with_usage))

    sent: dict[int, str] = {}
    done: dict[int, Event] = {}
    returned: dict[int, list] = {}
    try:
        for seq in generation.sequences:
            sent[seq.index] = ""
            yield chunk(seq.index, {"role": "assistant", "content": ""})
        try:
            async for event in generation.events():
                if event.kind == "delta":
                    if event.thoughts and body.include_reasoning:
                        yield chunk(event.index, {"reasoning_content": "\n".join(event.thoughts)})
                    if event.text:
                        sent[event.index] += event.text
                        yield chunk(event.index, {"content": event.text})
                    continue
                done[event.index] = event
                content, calls = declared_calls(event.full_text, declared) if declared else (event.full_text, [])
                returned[event.index] = calls
                if calls:
                    yield chunk(event.index, {"tool_calls": [{"index": k, **call} for k, call in enumerate(calls)]})
                else:
                    rest = event.full_text[len(sent[event.index]):]  # held text that turned out not to be a call
                    if rest:
                        yield chunk(event.index, {"content": rest})
                yield chunk(event.index, {}, "tool_calls" if calls else event.finish_reason)
        except APIError as error:
            await entry.record(done, returned, error)
            raise
        await entry.record(done, returned)  # committed before the usage chunk and [DONE]
        if with_usage:
            yield R.sse(R.chat_chunk(request_id, created, model, [], with_usage=True,
                                     usage_=R.usage(generation.prompt_tokens, generation.completion_tokens)))
    except APIError as error:
        yield R.sse(error.body())
    yield R.DONE
