"""Writing each answered request to the interaction log before its last byte goes out.

`record(state, generation, ...)` builds the request's `Interaction` (the user's prompt, choice 0's answer, the
hidden thoughts, the tool calls and their results, expert and confidence, latency, model version, token
counts), verifies the answer when the prompt is a task of a known domain (`interactions.recognise`), and waits
until the row is committed. The routes call it before sending a response's body (non-streaming) or the final
`data: [DONE]` (streaming), and for requests that ended in a 408/500 before the error goes out, so every
response a client received has its row. If the log cannot commit, the request fails with 503 rather than
being answered without its row. Answers that hand tool calls to the client (finish_reason `tool_calls`) are
not final answers and are not verified.

Exercise: `pytest tests/serve/test_interaction_log.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..interactions import Interaction, tool_trace, verify_answer
from ..tools import final_answer
from .engine import Event
from .errors import APIError
from .generation import Generation
from .state import ServerState

log = logging.getLogger("agent_forge.serve")
COMMIT_TIMEOUT_S = 30.0


async def record(state: ServerState, generation: Generation, *, response_id: str, prompt: str,
                 conversation: list[dict[str, Any]], done: dict[int, Event], returned_calls: dict[int, list] | None = None,
                 error: APIError | None = None) -> None:
    """Commit the request's row (no-op without a log); APIError 503 if the log cannot take it."""
    if state.log is None:
        return
    first = done.get(0)
    answer = first.full_text if first is not None else None
    interaction = Interaction(
        response_id=response_id, endpoint=generation.endpoint, model=state.model_name,
        model_version=generation.served_version, status=error.status if error else 200, prompt=prompt, answer=answer,
        thoughts=list(first.thoughts) if first else [], tool_calls=tool_trace(answer or ""),
        expert=first.expert if first else None, confidence=first.confidence if first else None,
        latency_ms=(time.monotonic() - generation.started) * 1000,
        ttft_ms=generation.ttft_s * 1000 if generation.ttft_s is not None else None,
        prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens,
        finish_reason=first.finish_reason if first else None, error=error.message if error else None,
        conversation=conversation,
    )
    returned_calls = returned_calls or {}
    if first is not None and not returned_calls.get(0):
        verified = verify_answer(prompt, final_answer(first.full_text), state.settings.facts_world)
        if verified is not None:
            task, interaction.verified = verified
            interaction.domain, interaction.reference = task.domain, task.answer
            state.metrics.verified.labels(task.domain, "yes" if interaction.verified else "no").inc()
    if len(done) > 1:
        interaction.choices = [
            {"index": i, "text": e.full_text, "finish_reason": e.finish_reason, "confidence": e.confidence,
             "expert": e.expert, "tool_calls_returned": bool(returned_calls.get(i))}
            for i, e in sorted(done.items())
        ]
    try:
        await asyncio.wait_for(asyncio.wrap_future(state.log.record(interaction)), COMMIT_TIMEOUT_S)
    except Exception as exc:  # the database is gone or full: the client must not get an unlogged answer
        state.metrics.log_failures.inc()
        log.error("cannot log response %s: %s", response_id, exc)
        raise APIError(503, f"the interaction log is unavailable ({type(exc).__name__}); the answer was not kept",
                       code="log_unavailable", headers={"Retry-After": "1"}) from None
