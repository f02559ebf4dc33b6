"""One server's state: the agent and engine once loaded, its settings and metrics, and requests in flight.

The agent loads in a background thread while the server already answers (`/health` says 503 until it is
ready; so does every `/v1` route). `admit` enforces the concurrency limit: requests in flight (queued or
generating) beyond `max_concurrent` get 429 at once instead of waiting without bound.

The interaction log opens when the state is built (a wrong path or an unreachable database is an error
before the server binds) and closes, after the engine stopped, at shutdown; the served model's version
(`interactions.version_of`) is known from the start. The drift watch (`canary.CanaryWatch`) starts once the
agent is loaded.

Versions: `swap(agent, version)` serves another agent without dropping a request: new requests go to a new
engine at once, while the old engine finishes what it holds and then forwards stragglers to the new one
(`Engine.retire`). The version watch (`versions.VersionWatch`) calls it when the version store's `CURRENT`
pointer moves (a promotion or a rollback by `agent-forge learn` / `rollback`).

Exercise: `pytest tests/serve/test_server_errors.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from ..interactions import InteractionLog, Redactor, Retention
from ..models import Agent, load_agent
from .engine import Engine
from .errors import APIError
from .metrics import ServerMetrics
from .settings import ServeSettings

log = logging.getLogger("agent_forge.serve")


class ServerState:
    def __init__(self, settings: ServeSettings, model_name: str, model_version: str = "unversioned"):
        self.settings = settings
        self.model_name = model_name
        self.model_version = settings.model_version or model_version
        self.metrics = ServerMetrics()
        self.log: InteractionLog | None = None
        self.canary = None  # canary.CanaryWatch once the agent is loaded and a canary is configured
        self.versions = None  # versions.VersionWatch when serving from a version store
        self.swaps = 0
        self._retiring: list[Engine] = []  # swapped-out engines still finishing their requests
        if settings.log_target is not None:
            self.log = InteractionLog.open(
                settings.log_target, synchronous=settings.log_synchronous,
                retention=Retention(settings.retention_days, settings.retention_rows),
                redactor=Redactor([*settings.api_keys, *settings.redact]), on_commit=self.metrics.log_committed,
            )
        self.agent: Agent | None = None
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.created = int(time.time())
        self.context_length: int | None = None
        self._in_flight = 0
        self._lock = threading.Lock()
        self.metrics.watch(lambda: self.engine.running if self.engine else 0,
                           lambda: self.engine.waiting if self.engine else 0,
                           lambda: self.engine.stats if self.engine else None)

    # ----------------------------------------------------------------------------------------- loading

    def attach(self, agent: Agent) -> None:
        """Serve this (already loaded) agent."""
        self.context_length = getattr(agent.model.config, "max_position_embeddings", None)
        engine = Engine(agent, max_batch=self.settings.max_batch, version=self.model_version).start()
        self.agent = agent
        if self.log is not None and self.settings.canary_every_s is not None:
            from .canary import CanaryWatch

            self.canary = CanaryWatch(self)  # in place before the engine is: /health says 200 with it there
        self.engine = engine
        log.info("serving %s as %r (version %s): %s, max batch %d", agent.source or "agent", self.model_name,
                 self.model_version, agent.describe(), self.settings.max_batch)
        if self.log is not None:
            log.info("logging interactions to %s", self.log.describe())
        if self.canary is not None:
            self.canary.start()
        if self.settings.version_store and self.settings.watch_versions_s:
            from .versions import VersionWatch

            self.versions = VersionWatch(self, self.settings.version_store, self.settings.watch_versions_s).start()

    def swap(self, agent: Agent, version: str) -> None:
        """Serve `agent` as `version` from now on; returns once the old engine has finished its requests."""
        new = Engine(agent, max_batch=self.settings.max_batch, version=version).start()
        old = self.engine
        with self._lock:
            self.agent, self.engine, self.model_version = agent, new, version
            self.context_length = getattr(agent.model.config, "max_position_embeddings", None)
            self.swaps += 1
            if old is not None:
                self._retiring.append(old)
        log.info("now serving version %s (%s)", version, agent.describe())
        if old is not None:
            old.retire(new)
            with self._lock:
                self._retiring.remove(old)
        if self.canary is not None:
            self.canary.kick("promotion")

    def load(self, source: Path, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Load the agent at `source` and start serving it (run in a background thread)."""
        try:
            self.attach(load_agent(source, device=self.settings.device, dtype=self.settings.dtype))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, who stops the server
            from ..errors import ForgeError

            self.load_error = str(exc) if isinstance(exc, ForgeError) else f"{type(exc).__name__}: {exc}"
            log.error("cannot load the agent at %s: %s", source, exc)
            if on_error is not None:
                on_error(exc)

    def shutdown(self) -> None:
        if self.versions is not None:
            self.versions.stop()
        if self.canary is not None:
            self.canary.stop()
        for engine in list(self._retiring):
            engine.stop()
        if self.engine is not None:
            self.engine.stop()
        if self.log is not None:
            self.log.close()  # after the engine: every answered request's row is already committed

    # --------------------------------------------------------------------------------------- requests

    def ready_engine(self) -> Engine:
        """The engine, or 503 while the agent is still loading (or failed to load)."""
        if self.engine is None:
            message = f"the agent failed to load: {self.load_error}" if self.load_error else "the agent is still loading"
            raise APIError(503, message, code="model_loading", headers={"Retry-After": "2"})
        return self.engine

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    def admit(self) -> None:
        """Count one more request in flight, or 429 if the server already holds `max_concurrent`."""
        with self._lock:
            if self._in_flight >= self.settings.max_concurrent:
                raise APIError(429, f"too many concurrent requests (the limit is {self.settings.max_concurrent}); "
                               "retry shortly", code="too_many_requests", headers={"Retry-After": "1"})
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_prompt_tokens(self) -> int | None:
        if self.settings.max_prompt_tokens is not None:
            return self.settings.max_prompt_tokens
        return self.context_length - 1 if self.context_length else None
