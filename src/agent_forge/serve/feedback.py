"""`POST /v1/feedback`: a thumbs up/down, a correction or a comment on an answer, by its response id.

    {"response_id": "chatcmpl-...", "rating": "up" | "down", "correction": "the right answer", "comment": "..."}

At least one of rating, correction, comment. The response id must be one the log holds (an answer's row is
committed before the answer is sent, so any id a client received is there). Where a task verifier applies to
the answered prompt, the correction is verified too (`correction_verified`: 1.0 or 0.0), so a wrong correction
is visible as such. Malformed feedback changes nothing: not JSON -> 400, unknown fields or wrong types ->
422, a body over `max_feedback_bytes` -> 413, an unknown response id -> 404, no log configured -> 501. The
reply is the stored feedback (its id, the rating, the correction's verification).

Exercise: `pytest tests/serve/test_feedback.py`.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Optional

from fastapi import Request
from pydantic import ConfigDict, Field, StrictStr

from ..interactions import Feedback, verify_answer
from .errors import APIError
from .middleware import BodyTooLarge
from .protocol import _Body, parse_body
from .state import ServerState

RATINGS = {"up": 1, "down": -1}


class FeedbackRequest(_Body):
    model_config = ConfigDict(extra="forbid")  # our own API: a misspelt field is an error, not ignored

    response_id: StrictStr = Field(min_length=1, max_length=128)
    rating: Optional[Literal["up", "down"]] = None
    correction: Optional[StrictStr] = Field(None, max_length=8000)
    comment: Optional[StrictStr] = Field(None, max_length=4000)


async def post_feedback(request: Request, state: ServerState) -> dict:
    if state.log is None:
        raise APIError(501, "this server keeps no interaction log, so it takes no feedback (start it with "
                       "--log-db PATH or --log-url URL)", code="log_disabled")
    declared = request.headers.get("content-length")
    limit = state.settings.max_feedback_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    if len(await request.body()) > limit:
        raise BodyTooLarge(limit)
    body: FeedbackRequest = await parse_body(request, FeedbackRequest)
    if body.rating is None and body.correction is None and body.comment is None:
        raise APIError(422, "feedback needs at least one of rating, correction, comment", code="invalid_value")
    answered = await asyncio.to_thread(state.log.get, body.response_id)
    if answered is None:
        raise APIError(404, f"no response with id {body.response_id!r} in this server's interaction log",
                       param="response_id", code="response_not_found")
    checked = None
    if body.correction is not None:
        verified = verify_answer(answered["prompt"] or "", body.correction, state.settings.facts_world)
        checked = verified[1] if verified is not None else None
    feedback = Feedback(body.response_id, RATINGS.get(body.rating), body.correction, body.comment, checked)
    try:
        await asyncio.wrap_future(state.log.add_feedback(feedback))
    except Exception as exc:
        raise APIError(503, f"the interaction log is unavailable ({type(exc).__name__})", code="log_unavailable",
                       headers={"Retry-After": "1"}) from None
    state.metrics.feedback.labels(body.rating or "none").inc()
    return {"id": feedback.feedback_id, "object": "feedback", "response_id": feedback.response_id,
            "rating": body.rating, "correction_verified": checked, "created": int(feedback.created)}
