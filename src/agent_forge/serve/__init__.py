"""Serving a forged agent over an OpenAI-compatible HTTP API (`agent-forge serve RUN_OR_AGENT`).

Layer: imports `models`, `inference`, `tools`, `interactions` and `utils`; never a stage or the pipeline. One
module per job:

* `settings.py` (limits, keys, loopback rule, log/canary options), `source.py` (which agent a run directory
  or version store serves, and the CLI's defaults for the log);
* `engine.py` (the one thread that owns the model: dynamic batching, the thinking/hooks path), with
  `batch.py` (the batched KV cache rows join and leave), `sampling.py` (per-row greedy/seeded sampling) and
  `textstream.py` (incremental text, stop strings, held-back tool calls);
* `protocol.py` (request bodies), `prompts.py` (messages and tools -> prompt), `responses.py` (response
  objects, SSE); tool calls are parsed and converted by `agent_forge.tools.calls`;
* `generation.py` (a request's trip through the engine: limits, timeout, cleanup), `chat.py`,
  `completions.py` (the two generation routes), `recording.py` (each answer's row in the interaction log,
  committed before the answer's last byte), `feedback.py` (`POST /v1/feedback`), `dashboard.py` and
  `dashboard_page.py` (`GET /dashboard`), `canary.py` (the drift watch), `state.py`, `metrics.py`,
  `errors.py`, `middleware.py` (keys, body size), `app.py` (the FastAPI app), `server.py` (binding,
  uvicorn, the CLI's entry).

Exercise: `pytest tests/serve` (the server driven by the official `openai` client).
"""

from .settings import API_KEY_ENV, ServeSettings, check_exposure, is_loopback, resolve_api_keys
from .source import resolve_agent_source

__all__ = [
    "API_KEY_ENV", "ServeSettings", "check_exposure", "create_app", "is_loopback", "resolve_agent_source",
    "resolve_api_keys", "serve",
]


def __getattr__(name: str):  # FastAPI, uvicorn and torch load only when a server is actually built
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
