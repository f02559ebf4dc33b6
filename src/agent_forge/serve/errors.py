"""Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}` with the right HTTP status.

`APIError` is raised anywhere while a request is handled; the handlers installed by `install_error_handlers`
turn it (and unknown routes, wrong methods, unexpected failures) into that JSON. Statuses where retrying the
same request cannot help (400, 401, 403, 404, 405, 413, 422) carry `x-should-retry: false`, which the official
clients honour; 429 and 503 carry `Retry-After` instead.

Exercise: `pytest tests/serve/test_server_errors.py`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("agent_forge.serve")

NO_RETRY = {400, 401, 403, 404, 405, 413, 422}
DEFAULT_TYPE = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error", 500: "server_error", 503: "service_unavailable_error",
}


class APIError(Exception):
    """A request that cannot be served as asked: becomes an OpenAI error response with `status`."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or DEFAULT_TYPE.get(status, "invalid_request_error")
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.status in NO_RETRY:
            headers.setdefault("x-should-retry", "false")
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = APIError(404, f"no route {request.method} {request.url.path}", code="unknown_url")
        elif exc.status_code == 405:
            error = APIError(405, f"method {request.method} is not allowed on {request.url.path}",
                             code="method_not_allowed")
        else:
            error = APIError(exc.status_code, str(exc.detail))
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return APIError(422, str(exc.errors()[:1]), code="invalid_value").response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving %s %s", request.method, request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}", code="internal_error").response()
