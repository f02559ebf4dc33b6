"""The request bodies the server accepts, as pydantic models of the OpenAI API (the fields it serves).

Unknown fields are ignored (clients add new ones all the time); known fields are type- and range-checked, and
a body that fails the check gets 422 naming the field. `parse_body` reads and checks a body: not JSON -> 400.
Fields the server cannot honour (logprobs, penalties, a JSON response format, ...) are refused by the route
with 400 rather than silently ignored.

Extensions beyond the OpenAI fields (extra body fields; with the `openai` client: `extra_body={...}`):
* `include_reasoning: true` returns a thinking agent's thoughts as `reasoning_content` (hidden by default);
* `think: false` answers without thinking (a thinking agent then joins the shared decode batch).

Exercise: `pytest tests/serve/test_server_errors.py`.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import APIError


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionDefinition(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.]+$")
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None


class ToolDefinition(_Body):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ToolCallFunction(_Body):
    name: str
    arguments: str = "{}"


class ToolCall(_Body):
    id: Optional[str] = None
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ContentPart(_Body):
    type: str
    text: Optional[str] = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCall]] = None
    tool_call_id: Optional[str] = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)  # 0 (greedy) by default: how the agent was evaluated
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: Optional[str] = None

    def stop_strings(self) -> tuple[str, ...]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise APIError(400, "at most 4 stop sequences are allowed", param="stop", code="invalid_value")
        return tuple(s for s in stop if s)

    def refuse_unsupported(self) -> None:
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise APIError(400, f"{name} is not supported by this server", param=name, code="unsupported_parameter")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    tools: Optional[list[ToolDefinition]] = None
    tool_choice: Union[Literal["none", "auto", "required"], dict[str, Any], None] = None
    logprobs: Optional[bool] = None
    response_format: Optional[dict[str, Any]] = None
    include_reasoning: bool = False
    think: Optional[bool] = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs:
            raise APIError(400, "logprobs are not supported by this server", param="logprobs", code="unsupported_parameter")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise APIError(400, "only response_format {'type': 'text'} is supported", param="response_format",
                           code="unsupported_parameter")

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    max_tokens: Optional[int] = Field(16, ge=1)  # the OpenAI default for completions
    echo: bool = False
    logprobs: Optional[int] = None
    suffix: Optional[str] = None
    best_of: Optional[int] = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        for name in ("logprobs", "suffix"):
            if getattr(self, name) is not None:
                raise APIError(400, f"{name} is not supported by this server", param=name, code="unsupported_parameter")
        if self.best_of not in (None, 1, self.n):
            raise APIError(400, "best_of is not supported by this server", param="best_of", code="unsupported_parameter")

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


async def parse_body(request, model: type[_Body]):
    """The request's JSON body checked against `model`: 400 if it is not a JSON object, 422 if a field is wrong."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise APIError(422, f"{param}: {first['msg']}{more}", param=param, code="invalid_value") from None
