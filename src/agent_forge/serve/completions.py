"""`POST /v1/completions`: raw prompt text (or token ids) in, its continuation out (no chat rendering).

A prompt is fed as given, with the tokenizer's own leading special tokens where it adds them (the tiny
tokenizer's `<bos>`), exactly as `models.generate(..., render=False)` feeds it. Several prompts and `n` give
`len(prompts) * n` choices, choice `i * n + j` being prompt i's j-th. `echo` puts the prompt before the text.
Every answered request is written to the interaction log (`recording.py`; the prompt is the first prompt's
text) before the body (or, streaming, the usage chunk and `data: [DONE]`) is sent.

Exercise: `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

from typing import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse

from . import responses as R
from .engine import Event, SamplingParams
from .errors import APIError
from .generation import Generation, GenerationStream, plan_max_tokens
from .prompts import encode_prompt
from .protocol import CompletionRequest, parse_body
from .recording import record
from .state import ServerState


def _prompts(body: CompletionRequest, tokenizer) -> list[tuple[list[int], str]]:
    prompt = body.prompt
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "the prompt is empty", param="prompt", code="empty_prompt")
    if isinstance(prompt[0], int):
        prompt = [prompt]
    vocab = len(tokenizer)
    prompts = []
    for item in prompt:
        if isinstance(item, str):
            prompts.append((encode_prompt(tokenizer, item), item))
        else:
            if any(not 0 <= t < vocab for t in item):
                raise APIError(400, f"prompt token ids must lie in [0, {vocab})", param="prompt", code="invalid_value")
            prompts.append((list(item), tokenizer.decode(item)))
    return prompts


async def completions(request: Request, state: ServerState):
    engine = state.ready_engine()
    body: CompletionRequest = await parse_body(request, CompletionRequest)
    state.check_model(body.model)
    body.refuse_unsupported()
    prompts = _prompts(body, engine.tokenizer)
    params = SamplingParams(
        max_tokens=plan_max_tokens(state, [len(ids) for ids, _ in prompts], body.requested_max_tokens, "max_tokens",
                                   "prompt"),
        temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stop_strings(),
    )
    generation = Generation.start(state, "completions", prompts, params, body.n, streaming=body.stream,
                                  engine=engine)
    echoes = {seq.index: (seq.prompt_text if body.echo else "") for seq in generation.sequences}
    response_id = R.new_id("cmpl")
    texts = [text for _, text in prompts]

    async def logged(done: dict[int, Event], error: APIError | None = None) -> None:
        try:
            await record(state, generation, response_id=response_id, prompt=texts[0],
                         conversation=[{"prompt": t} for t in texts], done=done, error=error)
        except APIError:
            generation.status = 503
            raise

    if body.stream:
        return GenerationStream(_stream(generation, body, state.model_name, echoes, response_id, logged), generation)
    try:
        done: dict[int, Event] = {}
        try:
            async for event in generation.events():
                if event.kind == "done":
                    done[event.index] = event
        except APIError as error:
            await logged(done, error)
            raise
        await logged(done)  # committed before the body goes out
        choices = [R.text_choice(i, echoes[i] + done[i].full_text, done[i].finish_reason) for i in sorted(done)]
        return JSONResponse(R.text_completion(response_id, R.now(), state.model_name, choices,
                                              R.usage(generation.prompt_tokens, generation.completion_tokens)))
    finally:
        generation.close()


async def _stream(generation: Generation, body: CompletionRequest, model: str, echoes: dict[int, str],
                  request_id: str, logged) -> AsyncIterator[str]:
    created = R.now()

    def chunk(index: int, text: str, finish_reason: str | None = None) -> str:
        return R.sse(R.text_completion(request_id, created, model, [R.text_choice(index, text, finish_reason)], None))

    done: dict[int, Event] = {}
    try:
        for index, echo in echoes.items():
            if echo:
                yield chunk(index, echo)
        try:
            async for event in generation.events():
                if event.kind == "delta" and event.text:
                    yield chunk(event.index, event.text)
                elif event.kind == "done":
                    done[event.index] = event
                    yield chunk(event.index, "", event.finish_reason)
        except APIError as error:
            await logged(done, error)
            raise
        await logged(done)  # committed before the usage chunk and [DONE]
        if body.include_usage:
            yield R.sse(R.text_completion(request_id, created, model, [],
                                          R.usage(generation.prompt_tokens, generation.completion_tokens)))
    except APIError as error:
        yield R.sse(error.body())
    yield R.DONE
