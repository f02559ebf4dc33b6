"""`GET /dashboard` (the page, `dashboard_page.py`) and `GET /dashboard/data` (its numbers as JSON).

Like `/metrics`, both are open without an API key: they show aggregates only (counts, latencies, tool names,
accuracies, versions), never a prompt or an answer. `?window=SECONDS` (60 to 7 days, default one hour) and
`?buckets=N` (5 to 120) choose the time axis. Without an interaction log the data says `enabled: false` and
the page says so.

Exercise: `pytest tests/serve/test_dashboard.py`.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import HTMLResponse

from ..interactions import dashboard_data, history
from .dashboard_page import page
from .state import ServerState


def dashboard_page(state: ServerState) -> HTMLResponse:
    return HTMLResponse(page(state.model_name), headers={"Cache-Control": "no-store"})


async def dashboard_json(state: ServerState, window: float = 3600.0, buckets: int = 30) -> dict:
    if state.log is None:
        return {"enabled": False, "model_version": state.model_version}
    store = state.settings.version_store
    data = await asyncio.to_thread(dashboard_data, state.log, window_s=window, buckets=buckets,
                                   history=history(store) if store else ())
    return {"enabled": True, "model": state.model_name, "model_version": state.model_version, **data}
