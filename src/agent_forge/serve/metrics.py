"""Prometheus metrics of one server (its own registry, so several servers in one process do not collide).

* `agent_forge_requests_running` / `agent_forge_requests_waiting`: answers being decoded / queued (a request
  with `n` choices counts n), read from the engine at scrape time;
* `agent_forge_prompt_tokens_total`, `agent_forge_generation_tokens_total`;
* `agent_forge_requests_total{endpoint,status}`: finished requests by HTTP status;
* `agent_forge_time_to_first_token_seconds`, `agent_forge_e2e_request_latency_seconds`: histograms;
* `agent_forge_decode_steps_total`, `agent_forge_decode_rows_total` (their ratio is the mean batch size),
  `agent_forge_prefills_total`: what the batching engine did;
* the interaction log: `agent_forge_log_commit_seconds` (one observation per group-commit transaction),
  `agent_forge_log_writes_total` (writes committed), `agent_forge_log_failures_total` (requests refused with
  503 because their row could not be committed), `agent_forge_feedback_total{rating}`,
  `agent_forge_verified_answers_total{domain,correct}`;
* the drift watch: `agent_forge_canary_accuracy_percent`, `agent_forge_canary_reference_percent` (the best of
  the recent runs it is compared with), `agent_forge_canary_falling` (1 while the latest run is more than the
  tolerance below its reference), `agent_forge_canary_runs_total`.

Exercise: `curl localhost:8000/metrics` or `pytest tests/serve/test_server_openai.py`.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

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

        self.log_commit = Histogram("agent_forge_log_commit_seconds", "Duration of one group-commit transaction.",
                                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                                    registry=r)
        self.log_writes = Counter("agent_forge_log_writes", "Writes committed to the interaction log.", registry=r)
        self.log_failures = Counter("agent_forge_log_failures", "Requests refused because their row could not be "
                                    "committed.", registry=r)
        self.feedback = Counter("agent_forge_feedback", "Feedback received, by rating.", ["rating"], registry=r)
        self.verified = Counter("agent_forge_verified_answers", "Answers checked by a task verifier.",
                                ["domain", "correct"], registry=r)
        self.canary_accuracy = Gauge("agent_forge_canary_accuracy_percent", "Accuracy of the latest canary run.",
                                     registry=r)
        self.canary_reference = Gauge("agent_forge_canary_reference_percent",
                                      "Best accuracy of the canary runs the latest one is compared with.", registry=r)
        self.canary_falling = Gauge("agent_forge_canary_falling", "1 while the latest canary run is falling.",
                                    registry=r)
        self.canary_runs = Counter("agent_forge_canary_runs", "Canary runs evaluated by this server.", registry=r)

    def log_committed(self, writes: int, seconds: float) -> None:
        """The writer's callback after each transaction (called in the writer thread)."""
        self.log_commit.observe(seconds)
        self.log_writes.inc(writes)

    def canary_result(self, accuracy: float, reference: float | None, falling: bool) -> None:
        self.canary_accuracy.set(accuracy)
        self.canary_reference.set(reference if reference is not None else float("nan"))
        self.canary_falling.set(1 if falling else 0)

    def watch(self, running: Callable[[], float], waiting: Callable[[], float], stats: Callable[[], object]) -> None:
        """Read the running/waiting gauges and the engine's counters (`EngineStats` or None) at every scrape."""
        self.running.set_function(running)
        self.waiting.set_function(waiting)
        self.registry.register(_EngineCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector:
    def __init__(self, stats: Callable[[], object]):
        self._stats = stats

    def collect(self):
        stats = self._stats()
        for name, attribute, text in (
            ("agent_forge_decode_steps", "steps", "Decode steps run (one forward for every row of the batch)."),
            ("agent_forge_decode_rows", "rows", "Rows decoded, summed over steps (divided by steps: mean batch size)."),
            ("agent_forge_prefills", "prefills", "Prefill forwards (newcomers joining the batch)."),
        ):
            family = CounterMetricFamily(name, text)
            family.add_metric([], float(getattr(stats, attribute, 0)) if stats is not None else 0.0)
            yield family
