"""Prometheus metrics of one server (its own registry, so several servers in one process do not collide).

* `agent_forge_requests_running` / `agent_forge_requests_waiting`: answers being decoded / queued (a request
  with `n` choices counts n), read from the engine at scrape time;
* `agent_forge_prompt_tokens_total`, `agent_forge_generation_tokens_total`;
* `agent_forge_requests_total{endpoint,status}`: finished requests by HTTP status;
* `agent_forge_time_to_first_token_seconds`, `agent_forge_e2e_request_latency_seconds`: histograms.

Exercise: `curl localhost:8000/metrics` or `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.running = Gauge("agent_forge_requests_running", "Answers being decoded now.", registry=r)
        self.waiting = Gauge("agent_forge_requests_waiting", "Answers queued for the decode batch.", registry=r)
        self.prompt_tokens = Counter("agent_forge_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter("agent_forge_generation_tokens", "Tokens generated.", registry=r)
        self.requests = Counter("agent_forge_requests", "Finished requests by endpoint and HTTP status.",
                                ["endpoint", "status"], registry=r)
        self.ttft = Histogram("agent_forge_time_to_first_token_seconds", "Time from request to first text.",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("agent_forge_e2e_request_latency_seconds", "Time from request to its last byte.",
                             buckets=LATENCY_BUCKETS, registry=r)

    def watch(self, running: Callable[[], float], waiting: Callable[[], float]) -> None:
        """Read the running/waiting gauges from these callables at every scrape."""
        self.running.set_function(running)
        self.waiting.set_function(waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
