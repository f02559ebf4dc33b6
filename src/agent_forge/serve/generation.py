"""One request's trip through the engine: token limits, submitting its answers, receiving their events.

`plan_max_tokens` applies the prompt and max_tokens limits (400 with the reason). `Generation.start` admits
the request (429 past the concurrency limit), submits one engine `Sequence` per answer (choice) and receives
the engine's events on the event loop; `events()` yields them until every answer is done, ending the request
with 408 once it has run longer than `request_timeout_s` (its answers leave the batch at the next step).
`close()` (idempotent; also called when a streaming client goes away) cancels what is left, releases the
concurrency slot and records the request's metrics.

Exercise: `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import AsyncIterator, Sequence as Seq

from starlette.responses import StreamingResponse

from .engine import Engine, Event, SamplingParams, Sequence
from .errors import APIError
from .state import ServerState


def plan_max_tokens(state: ServerState, prompt_lengths: Seq[int], requested: int | None, param: str,
                    prompt_param: str) -> int:
    """The max_tokens to generate per answer after checking the prompt and max_tokens limits."""
    settings, longest = state.settings, max(prompt_lengths)
    limit = state.max_prompt_tokens
    if longest == 0:
        raise APIError(400, "the prompt is empty", param=prompt_param, code="empty_prompt")
    if limit is not None and longest > limit:
        raise APIError(400, f"the prompt has {longest} tokens; this server accepts at most {limit}",
                       param=prompt_param, code="context_length_exceeded")
    if requested is not None and requested > settings.max_tokens:
        raise APIError(400, f"{param}={requested} is above this server's limit of {settings.max_tokens}",
                       param=param, code="max_tokens_too_large")
    room = state.context_length - longest if state.context_length else settings.max_tokens
    if requested is None:
        return max(1, min(settings.default_max_tokens, room))
    if requested > room:
        raise APIError(400, f"the prompt ({longest} tokens) plus {param} ({requested}) exceeds the model's context "
                       f"of {state.context_length} tokens", param=param, code="context_length_exceeded")
    return requested


class Generation:
    """The answers of one request in the engine, and the events coming back from it."""

    def __init__(self, state: ServerState, endpoint: str, engine: Engine | None = None):
        self.state = state
        self.endpoint = endpoint
        self.engine = engine  # the engine this request was submitted to (the server may swap in another)
        self.started = time.monotonic()
        self.deadline = self.started + state.settings.request_timeout_s
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.sequences: list[Sequence] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.status = 200
        self._first_text_at: float | None = None
        self._closed = False

    @classmethod
    def start(cls, state: ServerState, endpoint: str, prompts: Seq[tuple[list[int], str]], params: SamplingParams,
              n: int, *, streaming: bool, engine: Engine | None = None) -> "Generation":
        """Admit the request and submit `n` answers for each (ids, text) prompt; choice i*n+j is prompt i's j-th.

        `engine`: the one whose tokenizer encoded the prompts (the route's), so a version swap in between
        cannot pair ids with another engine; it forwards to its successor if it was swapped out meanwhile.
        """
        engine = engine or state.ready_engine()
        if n > state.settings.max_n:
            raise APIError(400, f"n={n} is above this server's limit of {state.settings.max_n}", param="n",
                           code="invalid_value")
        state.admit()
        generation = cls(state, endpoint, engine)
        loop = asyncio.get_running_loop()

        def sink(event: Event) -> None:
            loop.call_soon_threadsafe(generation.queue.put_nowait, event)

        for p, (ids, text) in enumerate(prompts):
            generation.prompt_tokens += len(ids)
            for j in range(n):
                seq_params = replace(params, seed=params.seed + j) if params.seed is not None and j else params
                generation.sequences.append(Sequence(ids, seq_params, index=p * n + j, sink=sink,
                                                     tokenizer=engine.tokenizer, prompt_text=text,
                                                     streaming=streaming))
        state.metrics.prompt_tokens.inc(generation.prompt_tokens)
        engine.submit(generation.sequences)
        return generation

    @property
    def served_version(self) -> str:
        """The model version that answered (the engine's when the request was admitted; see engine.py)."""
        found = next((s.served_version for s in self.sequences if s.served_version), None)
        return found or (self.engine.version if self.engine is not None and self.engine.version else None) \
            or self.state.model_version

    @property
    def ttft_s(self) -> float | None:
        """Seconds from the request to its first text (None before any)."""
        return None if self._first_text_at is None else max(0.0, self._first_text_at - self.started)

    async def events(self) -> AsyncIterator[Event]:
        """Every event of every answer until all are done; APIError 408 past the deadline, 500 on engine failure."""
        remaining = {seq.index for seq in self.sequences}
        while remaining:
            try:
                event = await asyncio.wait_for(self.queue.get(), max(0.0, self.deadline - time.monotonic()))
            except asyncio.TimeoutError:
                self.status = 408
                self.close()
                raise APIError(408, f"the request took longer than {self.state.settings.request_timeout_s:g} s and "
                               "was stopped", code="request_timeout") from None
            if event.kind == "error":
                self.status = 500
                self.close()
                raise APIError(500, event.error or "generation failed", code="generation_failed")
            if self._first_text_at is None:
                firsts = [seq.first_token_at for seq in self.sequences if seq.first_token_at is not None]
                self._first_text_at = min(firsts) if firsts else time.monotonic()
                self.state.metrics.ttft.observe(max(0.0, self._first_text_at - self.started))
            if event.kind == "done":
                remaining.discard(event.index)
                self.completion_tokens += event.completion_tokens
            yield event

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        unfinished = [seq for seq in self.sequences if not seq.finished]
        engine = self.engine or self.state.engine
        if unfinished and engine is not None:
            engine.cancel(unfinished)
        self.state.release()
        metrics = self.state.metrics
        metrics.generation_tokens.inc(self.completion_tokens)
        metrics.e2e.observe(time.monotonic() - self.started)
        metrics.requests.labels(self.endpoint, str(self.status)).inc()


class GenerationStream(StreamingResponse):
    """An SSE response that closes its generation however the response ends (finished, error, client gone)."""

    def __init__(self, content, generation: Generation):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.generation = generation

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.close()
