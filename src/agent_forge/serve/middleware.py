"""The gate in front of every route: Bearer API keys on `/v1/*`, then the request-body size limit.

Written as plain ASGI middleware so both checks happen before a route reads anything: a request without a
valid key gets 401 whatever its body, and a body over the limit gets 413 as soon as its declared length (or,
for chunked uploads, the bytes received so far) exceeds it, without being read further. `/health` and
`/metrics` stay open, as load balancers and Prometheus expect.

Exercise: `pytest tests/serve/test_server_errors.py`.
"""

from __future__ import annotations

import hmac
from typing import Sequence

from .errors import APIError

PROTECTED_PREFIX = "/v1"


class BodyTooLarge(APIError):
    def __init__(self, limit: int):
        super().__init__(413, f"request body too large: the limit is {limit} bytes", code="request_too_large")


class GuardMiddleware:
    def __init__(self, app, *, api_keys: Sequence[str], max_body_bytes: int):
        self.app = app
        self.keys = [k.encode() for k in api_keys]
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.keys and scope.get("path", "").startswith(PROTECTED_PREFIX):
            problem = self._auth_problem(headers.get(b"authorization"))
            if problem:
                error = APIError(401, problem, type="invalid_request_error", code="invalid_api_key",
                                 headers={"WWW-Authenticate": "Bearer"})
                return await error.response()(scope, receive, send)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_body_bytes
            except ValueError:
                return await APIError(400, "invalid Content-Length header").response()(scope, receive, send)
            if too_large:
                return await BodyTooLarge(self.max_body_bytes).response()(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)  # the route's APIError handler answers 413
            return message

        return await self.app(scope, counting_receive, send)

    def _auth_problem(self, header: bytes | None) -> str | None:
        if not header:
            return "missing API key: send the header 'Authorization: Bearer <key>'"
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return "malformed Authorization header: expected 'Bearer <key>'"
        token = token.strip()
        # compare against every key (constant time each), so timing does not tell which one nearly matched
        if not any([hmac.compare_digest(token, key) for key in self.keys]):
            return "incorrect API key provided"
        return None
