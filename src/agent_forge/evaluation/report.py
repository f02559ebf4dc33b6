"""Aggregate per-item scores into accuracy by domain and by (domain, level).

Accuracy is a percentage (0-100) everywhere in the project: metrics.json, tables, status lines. `EvalReport`
is the reference; `percent(fraction)` converts any other hit rate the same way (x 100, 2 decimals).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal, Sequence

from ..tasks import Task
from .generation import generate_answers
from .teacher_forced import teacher_forced
from ..tasks import verify


def percent(fraction: float) -> float:
    """A fraction of items right (0-1) as the percentage every metric and table uses, rounded to 2 decimals."""
    return round(100.0 * float(fraction), 2)


@dataclass
class EvalReport:
    """Scores of one model on a task set; `items` keeps (task_id, domain, level, score) per task."""

    items: list[tuple[str, str, int, float]]
    loglik: list[float] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # the generated text per item (generation path only)

    @property
    def accuracy(self) -> float:
        return 100.0 * sum(s for *_, s in self.items) / max(1, len(self.items))

    @property
    def mean_loglik(self) -> float:
        return sum(self.loglik) / max(1, len(self.loglik)) if self.loglik else float("nan")

    @property
    def by_domain(self) -> dict[str, float]:
        return self._group(lambda d, lvl: d)

    @property
    def by_domain_level(self) -> dict[str, dict[int, float]]:
        grouped: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for _, domain, level, score in self.items:
            grouped[domain][level].append(score)
        return {d: {lvl: 100.0 * sum(v) / len(v) for lvl, v in sorted(levels.items())} for d, levels in grouped.items()}

    def _group(self, key) -> dict:
        grouped: dict = defaultdict(list)
        for _, domain, level, score in self.items:
            grouped[key(domain, level)].append(score)
        return {k: 100.0 * sum(v) / len(v) for k, v in sorted(grouped.items())}

    def to_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 2),
            "mean_loglik": round(self.mean_loglik, 4) if self.loglik else None,
            "by_domain": {k: round(v, 2) for k, v in self.by_domain.items()},
            "by_domain_level": {d: {str(k): round(v, 2) for k, v in lv.items()} for d, lv in self.by_domain_level.items()},
            "n": len(self.items),
        }


def evaluate(
    model, tokenizer, tasks: Sequence[Task], method: Literal["fast", "generate"] = "fast", batch_size: int = 64,
) -> EvalReport:
    """Evaluate with the fast teacher-forced path (exact match + log-likelihood) or by generation."""
    if method == "fast":
        result = teacher_forced(model, tokenizer, tasks, batch_size)
        scores = [1.0 if e else 0.0 for e in result.exact]
        loglik = result.loglik
    elif method == "generate":
        outputs = generate_answers(model, tokenizer, tasks, batch_size=batch_size)
        scores = [verify(t, o) for t, o in zip(tasks, outputs)]
        loglik = []
    else:
        raise ValueError(f"unknown evaluation method {method!r}")
    items = [(t.task_id, t.domain, t.level, s) for t, s in zip(tasks, scores)]
    return EvalReport(items=items, loglik=loglik)


def evaluate_agent(agent, tasks: Sequence[Task], method: Literal["fast", "generate"] = "fast", batch_size: int = 64,
                   *, think: bool | None = None) -> EvalReport:
    """`evaluate` for a loaded agent, as it answers: an agent that dispatches prompts to experts (an extension
    with `route` and `using`, e.g. SVF experts) is scored with each task under the weights its dispatch picks
    (tasks grouped by choice), and the generation path answers through `inference.answer`, so an agent with a
    Quiet-STaR head thinks before each answer token as it does in chat. The fast path scores the ordinary
    (no-thought) predictions. An agent with tools answers with them on the generation path (calls executed,
    the verifier scoring the text after the last tool response); `think=False` answers without thoughts. An
    agent with a design (ADAS) is scored under its settings, and on the generation path answers through it."""
    from ..inference.design import applied_design

    with applied_design(agent, agent.extensions.get("design")):
        return _evaluate_dispatched(agent, tasks, method, batch_size, think)


def _evaluate_dispatched(agent, tasks: Sequence[Task], method: str, batch_size: int, think: bool | None) -> EvalReport:
    groups = dispatch_groups(agent, [t.prompt for t in tasks])
    if groups is None:
        return _evaluate_plainly(agent, tasks, method, batch_size, think)
    dispatcher, by_choice = groups
    items: list = [None] * len(tasks)
    loglik: list = [None] * len(tasks)
    answers: list = [None] * len(tasks)
    saved_mode = dispatcher.mode
    try:
        for choice, indices in by_choice.items():
            part_tasks = [tasks[i] for i in indices]
            if method == "generate":
                # answer()'s own hook applies the expert: pin the dispatch to this group's choice
                dispatcher.mode = choice or "off"
                part = _evaluate_plainly(agent, part_tasks, method, batch_size, think)
            else:
                with dispatcher.using(agent.model, choice):
                    part = _evaluate_plainly(agent, part_tasks, method, batch_size, think)
            for k, i in enumerate(indices):
                items[i] = part.items[k]
                if part.loglik:
                    loglik[i] = part.loglik[k]
                if part.answers:
                    answers[i] = part.answers[k]
    finally:
        dispatcher.mode = saved_mode
    return EvalReport(items=items, loglik=[x for x in loglik if x is not None],
                      answers=[a for a in answers if a is not None])


def dispatch_groups(agent, prompts: Sequence[str]):
    """(dispatcher, {choice: task indices}) for an agent whose extension routes prompts, else None."""
    for extension in agent.extensions.values():
        if hasattr(extension, "route") and hasattr(extension, "using"):
            if hasattr(extension, "can_dispatch") and not extension.can_dispatch(agent):
                return None  # e.g. an old packed bundle whose experts carry no SVD factors: base weights
            by_choice: dict = {}
            for i, choice in enumerate(extension.route(agent, list(prompts))):
                by_choice.setdefault(choice.expert, []).append(i)
            return extension, by_choice
    return None


def _evaluate_plainly(agent, tasks: Sequence[Task], method: str, batch_size: int, think: bool | None = None) -> EvalReport:
    if method != "generate":
        return evaluate(agent.model, agent.tokenizer, tasks, method=method, batch_size=batch_size)
    from ..inference import answer
    from ..tools import final_answer
    from .generation import _max_new_tokens

    if not tasks:
        return EvalReport(items=[])
    tools = agent.extensions.get("tools")
    budget = _max_new_tokens(agent.tokenizer, tasks, 8)
    options = {}
    if tools is not None:  # each round writes a call (or the answer): room for a call, and a round per call
        budget = max(budget, TOOL_ROUND_TOKENS)
        options["max_hook_rounds"] = tools.max_calls
    replies = answer(agent, [t.prompt for t in tasks], max_new_tokens=budget, batch_size=batch_size, think=think,
                     **options)
    texts = [r.text for r in replies]
    items = [(t.task_id, t.domain, t.level, verify(t, final_answer(text))) for t, text in zip(tasks, texts)]
    return EvalReport(items=items, answers=texts)


TOOL_ROUND_TOKENS = 192  # tokens per generation round of a tool-using agent: a rewritten question and a call
