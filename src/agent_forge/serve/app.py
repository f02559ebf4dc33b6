"""The FastAPI application: routes, the key/size gate, OpenAI error handling, loading in the background.

    GET  /health                 200 {"status": "ok"} once the agent is loaded, 503 while loading
    GET  /metrics                Prometheus text format (metrics.py)
    GET  /v1/models              the one served model;  GET /v1/models/{id}
    POST /v1/chat/completions    chat.py
    POST /v1/completions         completions.py
    POST /v1/feedback            feedback.py (thumbs up/down, corrections on a response id)
    GET  /dashboard              the live dashboard page; GET /dashboard/data its numbers (dashboard.py)

`create_app(settings, agent=...)` serves an agent already in memory (tests, benchmarks);
`create_app(settings, source=path)` loads it in a background thread once the server starts. The interaction
log (`settings.log_target`) opens here, so a bad path or URL fails before the server starts.

Exercise: `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from . import responses as R
from .chat import chat_completions
from .completions import completions
from .dashboard import dashboard_json, dashboard_page
from .errors import APIError, install_error_handlers
from .feedback import post_feedback
from .middleware import GuardMiddleware
from .settings import ServeSettings
from .state import ServerState


def create_app(settings: ServeSettings, *, agent=None, source: str | Path | None = None, model_name: str | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    if (agent is None) == (source is None):
        raise ValueError("give exactly one of agent= and source=")
    name = settings.model_name or model_name or "agent"
    state = ServerState(settings, name, _version(agent, source))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if agent is not None:
            state.attach(agent)
        else:
            threading.Thread(target=state.load, args=(Path(source), on_load_error), name="agent-forge-load",
                             daemon=True).start()
        try:
            yield
        finally:
            state.shutdown()

    app = FastAPI(title="agent-forge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.forge = state
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, api_keys=settings.api_keys, max_body_bytes=settings.max_body_bytes)

    @app.get("/health")
    async def health():
        if state.engine is None:
            status = "failed" if state.load_error else "loading"
            return JSONResponse({"status": status, "error": state.load_error}, status_code=503)
        return {"status": "ok", "model": state.model_name}

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models")
    async def list_models():
        state.ready_engine()
        return {"object": "list", "data": [R.model_card(state.model_name, state.created)]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        state.ready_engine()
        state.check_model(model_id)
        return R.model_card(state.model_name, state.created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await _counted(state, "chat", chat_completions(request, state))

    @app.post("/v1/completions")
    async def complete(request: Request):
        return await _counted(state, "completions", completions(request, state))

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        return await post_feedback(request, state)

    @app.get("/dashboard")
    async def dashboard():
        return dashboard_page(state)

    @app.get("/dashboard/data")
    async def dashboard_data(window: float = Query(3600.0, ge=60.0, le=7 * 86400.0),
                             buckets: int = Query(30, ge=5, le=120)):
        return await dashboard_json(state, window, buckets)

    return app


def _version(agent, source) -> str:
    """The served model's version name (`interactions.version_of` of its folder; in-memory agents: "in-memory")."""
    from ..interactions import version_of

    where = source if source is not None else getattr(agent, "source", None)
    if where and Path(where).exists():
        return version_of(where)
    return "in-memory"


async def _counted(state: ServerState, endpoint: str, handling):
    """Run a route; a request refused before it reached the engine is counted in the metrics with its status."""
    try:
        return await handling
    except APIError as error:
        if error.status not in (408, 500):  # those were counted by their Generation
            state.metrics.requests.labels(endpoint, str(error.status)).inc()
        raise
