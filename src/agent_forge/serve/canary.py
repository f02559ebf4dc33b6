"""The drift watch: the canary set evaluated by the server's own engine, on a schedule and on a new version.

`CanaryWatch(state)` runs in a thread once the agent is loaded. Its first run is labelled `promotion` when
the log has canary runs but none for the version now served (the version store's pointer moved, or another
model is served), else `start`; then it runs every `canary_every_s` seconds (`schedule`; 0: no scheduled
runs); `kick(trigger)` runs it now (the server swapped to a promoted or rolled-back version: `promotion`). Each run submits the canary prompts (`interactions.canary_tasks`, rendered as a single user turn) to
the engine like any request, greedy, so it measures the agent exactly as it answers; the result, compared with
the best of the recent runs (`interactions.assess`), goes to the log's `canary_runs` table and to /metrics.
On start the gauges show the log's latest run, so a falling canary stays visible across restarts.

Exercise: `pytest tests/serve/test_dashboard.py`.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..interactions import CanaryPolicy, CanaryRun, assess, canary_tasks, score
from ..models import prompt_format
from .engine import SamplingParams, Sequence
from .prompts import encode_prompt
from .state import ServerState

log = logging.getLogger("agent_forge.serve")
RUN_TIMEOUT_S = 600.0


class CanaryWatch:
    def __init__(self, state: ServerState):
        settings = state.settings
        self.state = state
        self.policy = CanaryPolicy(per_domain=settings.canary_per_domain, every_s=settings.canary_every_s or 0.0,
                                   tolerance=settings.canary_tolerance)
        self.tasks = canary_tasks(self.policy.per_domain, settings.facts_world)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and kick()
        self._kicked: str | None = None
        self._thread = threading.Thread(target=self._run, name="agent-forge-canary", daemon=True)
        self.runs_done = 0

    def start(self) -> "CanaryWatch":
        runs = self.state.log.canary_runs(limit=1)
        if runs:
            last = runs[-1]
            self.state.metrics.canary_result(last["accuracy"], last["reference"], last["falling"])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def kick(self, trigger: str) -> None:
        """Run the canary now (after the current run, if one is going), labelled `trigger`."""
        self._kicked = trigger
        self._wake.set()

    def _run(self) -> None:
        earlier = self.state.log.canary_runs()
        seen = {r["model_version"] for r in earlier}
        trigger = "promotion" if earlier and self.state.model_version not in seen else "start"
        while not self._stop.is_set():
            try:
                self.run_once(trigger)
            except Exception as exc:  # a failed run is logged; the watch goes on with the next
                log.error("canary run failed: %s: %s", type(exc).__name__, exc)
            # 0: no schedule, only kicks (a new version); stop() wakes the wait too
            kicked = self._wake.wait(self.policy.every_s or None)
            self._wake.clear()
            if self._stop.is_set():
                return
            trigger = (self._kicked or "schedule") if kicked else "schedule"
            self._kicked = None

    def run_once(self, trigger: str) -> CanaryRun:
        state = self.state
        engine = state.ready_engine()
        fmt = prompt_format(engine.tokenizer)
        answers: queue.Queue = queue.Queue()
        sequences = []
        for index, task in enumerate(self.tasks):
            text = fmt.render(task.prompt)
            ids = encode_prompt(engine.tokenizer, text)
            room = (state.context_length - len(ids)) if state.context_length else self.policy.max_tokens
            params = SamplingParams(max_tokens=max(1, min(self.policy.max_tokens, room)))
            sequences.append(Sequence(ids, params, index=index, sink=answers.put, tokenizer=engine.tokenizer,
                                      prompt_text=text, streaming=False))
        engine.submit(sequences)
        outputs: dict[int, str] = {}
        try:
            while len(outputs) < len(sequences):
                event = answers.get(timeout=RUN_TIMEOUT_S)
                if event.kind in ("done", "error"):
                    outputs[event.index] = event.full_text if event.kind == "done" else ""
                if self._stop.is_set():
                    raise RuntimeError("the server is stopping")
        finally:
            engine.cancel([s for s in sequences if not s.finished])
        accuracy, by_domain = score(self.tasks, [outputs[i] for i in range(len(self.tasks))])
        reference, falling = assess(state.log.canary_runs(limit=self.policy.window), accuracy, self.policy)
        run = CanaryRun(state.model_version, trigger, accuracy, len(self.tasks), by_domain, reference, falling)
        state.log.add_canary(run).result(timeout=30)
        state.metrics.canary_runs.inc()
        state.metrics.canary_result(accuracy, reference, falling)
        self.runs_done += 1
        log.log(logging.WARNING if falling else logging.INFO, "canary (%s, version %s): %.1f%% of %d%s", trigger,
                state.model_version, accuracy, len(self.tasks),
                f" - FALLING: best of the last runs {reference:.1f}%" if falling else "")
        return run
