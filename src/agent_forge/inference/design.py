"""Answering through an agent design: each field of `AgentDesign` switches one block below.

Blocks (plain functions over `answer`, composable in this order):
* settings held while answering (`applied_design`): expert dispatch mode and router threshold, tool policy
  (off: the tools extension is set aside), tool calls per answer, memory-search k, thought length, and early
  exit (decode with the first N decoder layers: layer skipping for speed);
* the answer itself: greedy or sampled, thinking or not, tool-first (the answer opens with `<tool_call>`);
* `self_consistency`: k sampled answers, the most frequent final answer wins (Wang et al. 2023);
* `self_refine`: draft, critique by the self-model's confidence, revise (Madaan et al. 2023, with the critique
  a calibrated score rather than prose: a 1M-parameter model writes no useful critiques); the revision draws
  more candidates (thinking when the agent can, samples) and keeps the most likely one;
* `abstain_and_retry`: answers whose likelihood is below a threshold are resampled; after the retries the
  best attempt, or an abstention;
* a generated `program` (the ADAS meta-agent's code) runs only in `agent_forge.sandbox`, calling back into
  the agent through a narrow API (`host_api`).

`answer(agent, prompts)` routes here when the agent carries a design (`agent.extensions["design"]`); the blocks
call `answer(..., design=False)` for their generations. `counting_cost(agent)` measures what a design costs:
tokens through the model (prompt, thoughts and answers, every pass) and wall time.
Exercise: `pytest tests/inference/test_design.py`.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

from ..models.formats.design import AgentDesign
from .confidence import answer_likelihood, self_confidence

ABSTAIN_TEXT = "I am not sure."
PROGRAM_ENTRY = "answer"  # the function a generated block defines: answer(prompt, agent) -> str
_PROGRAM_RUNNER = "__forge_answer_all"
HOST_METHODS = ("generate", "generate_many", "confidence", "likelihood", "search_memory", "calculate")


class TokenLimitReached(Exception):
    """Raised from inside a forward pass once `counting_cost(..., token_limit=N)` has counted more than N tokens.

    An ordinary `Exception` on purpose: where a generated block's host call swallows it, every later forward pass
    raises again at once, so the block ends quickly, and `Cost.limit_reached` still says what happened."""


@dataclass
class Cost:
    """What answering cost: tokens through the model (every forward pass, all rows) and wall seconds."""

    tokens: int = 0
    seconds: float = 0.0
    answers: int = 0
    limit_reached: bool = False  # the block was stopped at its token limit (tokens is then a lower bound)

    def per_answer(self) -> dict[str, float]:
        n = max(self.answers, 1)
        return {"tokens": self.tokens / n, "ms": 1000 * self.seconds / n}


@contextmanager
def counting_cost(agent, answers: int = 0, *, token_limit: float | None = None) -> Iterator[Cost]:
    """Count the tokens every forward pass of the agent's model processes while the block runs.

    With `token_limit`, the first forward pass that would take the count above it raises `TokenLimitReached`
    (before it runs), and so does every one after it."""
    cost = Cost(answers=answers)

    def count(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None and kwargs.get("inputs_embeds") is not None:
            ids = kwargs["inputs_embeds"][..., 0]
        if ids is not None:
            cost.tokens += int(ids.numel())
        if token_limit is not None and cost.tokens > token_limit:
            cost.limit_reached = True
            raise TokenLimitReached(f"over the limit of {token_limit:.0f} tokens")

    # the decoder stack, not the LM: thinking generation calls it directly with embeddings
    decoder = getattr(agent.model, "model", agent.model)
    handle = decoder.register_forward_pre_hook(count, with_kwargs=True)
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds += time.perf_counter() - start
        handle.remove()


# --- settings held while answering ---------------------------------------------------------------------
@contextmanager
def applied_design(agent, design: AgentDesign | None) -> Iterator[None]:
    """Hold the design's settings on the agent (restored on exit; nested application is a no-op)."""
    if design is None or getattr(agent, "_design_applied", False):
        yield
        return
    with ExitStack() as stack:
        stack.enter_context(_dispatch(agent, design))
        stack.enter_context(_tool_policy(agent, design))
        stack.enter_context(_thought_length(agent, design))
        stack.enter_context(_early_exit(agent, design.layers))
        agent._design_applied = True
        try:
            yield
        finally:
            agent._design_applied = False


@contextmanager
def _dispatch(agent, design: AgentDesign):
    experts = agent.extensions.get("experts")
    if experts is None or not hasattr(experts, "mode"):
        yield
        return
    mode, threshold = experts.mode, getattr(experts, "threshold", None)
    if mode == "auto":  # a mode the user pinned (eval/chat --experts NAME) wins over the design
        experts.mode = design.dispatch
    if design.dispatch_threshold is not None:
        experts.threshold = design.dispatch_threshold
    try:
        yield
    finally:
        experts.mode, experts.threshold = mode, threshold


_REBUILT_TOOLS: dict[tuple, Any] = {}  # (tool use, memory k) -> its registry rebuilt with that k (opens a store)


@contextmanager
def _tool_policy(agent, design: AgentDesign):
    use = agent.extensions.get("tools")
    if use is None:
        yield
        return
    if design.tools == "off":
        agent.extensions.pop("tools")
    else:
        changed = copy.copy(use)
        if design.max_calls is not None:
            changed.max_calls = design.max_calls
        if design.memory_k is not None and design.memory_k != use.memory_k and use.memory_path is not None:
            key = (id(use), design.memory_k)
            if key not in _REBUILT_TOOLS:
                from ..tools import builtin_registry

                _REBUILT_TOOLS[key] = builtin_registry(use.registry.names, memory_path=use.memory_path,
                                                       memory_k=design.memory_k)
            changed.registry, changed.memory_k = _REBUILT_TOOLS[key], design.memory_k
        agent.extensions["tools"] = changed
    try:
        yield
    finally:
        agent.extensions["tools"] = use


@contextmanager
def _thought_length(agent, design: AgentDesign):
    thoughts = agent.extensions.get("thoughts")
    if thoughts is None or design.thought_length is None:
        yield
        return
    agent.extensions["thoughts"] = replace(thoughts, info=replace(thoughts.info, thought_length=design.thought_length))
    try:
        yield
    finally:
        agent.extensions["thoughts"] = thoughts


@contextmanager
def _early_exit(agent, layers: int | None):
    """Decode with the first `layers` decoder layers (then the final norm and the head).

    The layers stay in the model (an expert still finds every matrix it scales); the decoder runs the first
    `config.num_hidden_layers` of them, as transformers' Llama does, and the KV cache is sized from it."""
    config = agent.model.config
    count = getattr(config, "num_hidden_layers", None)
    if layers is None or count is None or layers >= count:
        yield
        return
    layer_types = getattr(config, "layer_types", None)
    config.num_hidden_layers = layers
    if layer_types is not None:
        config.layer_types = list(layer_types)[:layers]
    try:
        yield
    finally:
        config.num_hidden_layers = count
        if layer_types is not None:
            config.layer_types = layer_types


# --- the answer program ---------------------------------------------------------------------------------
def answer_with_design(agent, prompts: Sequence[str], design: AgentDesign, *, seed: int = 0, **options) -> list:
    """Answer `prompts` the way `design` says; `options` are `answer`'s (max_new_tokens, batch_size, ...)."""
    from .answer import answer

    prompts = list(prompts)
    if not prompts:
        return []
    with applied_design(agent, design):
        if design.program:
            return run_program(agent, prompts, design, seed=seed, **options)
        think = design.think and agent.thinks
        prefix = _tool_prefix(agent, design)

        def attempt(items: list[str], temperature: float, draw_seed: int, thinking: bool = think) -> list:
            return answer(agent, items, temperature=temperature, seed=draw_seed, think=thinking, prefix=prefix,
                          design=False, **options)

        if design.votes > 1:
            replies = self_consistency(attempt, prompts, design.votes, design.vote_temperature, seed)
        else:
            replies = attempt(prompts, design.temperature, seed)
        if design.refine_below is not None:
            replies = self_refine(agent, attempt, prompts, replies, design, seed)
        if design.retry_below is not None:
            replies = abstain_and_retry(agent, attempt, prompts, replies, design, seed)
    return replies


def _tool_prefix(agent, design: AgentDesign) -> str:
    if design.tools != "first" or agent.extensions.get("tools") is None:
        return ""
    from ..tools import TOOL_CALL_OPEN

    return TOOL_CALL_OPEN


def final_text(text: str) -> str:
    """What a verifier reads of an answer: the text after the last tool response, stripped."""
    from ..tools import final_answer

    return final_answer(text).strip()


def self_consistency(attempt, prompts: list[str], votes: int, temperature: float, seed: int) -> list:
    """`votes` sampled answers per prompt; the most frequent final answer wins (ties: the earliest drawn)."""
    samples = [attempt(prompts, temperature, seed + 1000 * k) for k in range(votes)]
    winners = []
    for i in range(len(prompts)):
        candidates = [draw[i] for draw in samples]
        counts = Counter(final_text(c.text) for c in candidates)
        best = max(counts.values())
        winners.append(next(c for c in candidates if counts[final_text(c.text)] == best))
    return winners


def _likelihood(agent, prompts: Sequence[str], replies: Sequence) -> list[float]:
    return answer_likelihood(agent.model, agent.tokenizer, list(prompts), [r.text for r in replies])


def self_refine(agent, attempt, prompts: list[str], drafts: list, design: AgentDesign, seed: int) -> list:
    """Revise the drafts the self-model doubts: more candidates, the most likely one kept (the draft included)."""
    confidence = self_confidence(agent.model, agent.tokenizer, prompts)
    doubted = [i for i, c in enumerate(confidence) if c < design.refine_below]
    if not doubted:
        return drafts
    items = [prompts[i] for i in doubted]
    candidates = [[drafts[i]] for i in doubted]
    rounds = [attempt(items, design.vote_temperature, seed + 7919 + k) for k in range(2)]
    if agent.thinks and not design.think:
        rounds.append(attempt(items, 0.0, seed, thinking=True))
    for draw in rounds:
        for slot, reply in enumerate(draw):
            candidates[slot].append(reply)
    revised = list(drafts)
    flat = [(slot, c) for slot, group in enumerate(candidates) for c in group]
    scores = _likelihood(agent, [items[slot] for slot, _ in flat], [c for _, c in flat])
    best: dict[int, tuple[float, Any]] = {}
    for (slot, candidate), score in zip(flat, scores):
        if slot not in best or score > best[slot][0]:
            best[slot] = (score, candidate)
    for slot, i in enumerate(doubted):
        revised[i] = best[slot][1]
    return revised


def abstain_and_retry(agent, attempt, prompts: list[str], replies: list, design: AgentDesign, seed: int) -> list:
    """Resample answers whose likelihood is below `retry_below`; then the best attempt, or an abstention."""
    from .answer import Reply

    replies = list(replies)
    scores = _likelihood(agent, prompts, replies)
    best = {i: (scores[i], replies[i]) for i in range(len(prompts))}
    pending = [i for i, s in enumerate(scores) if s < design.retry_below]
    for k in range(design.retries):
        if not pending:
            break
        draw = attempt([prompts[i] for i in pending], design.vote_temperature, seed + 104729 * (k + 1))
        new_scores = _likelihood(agent, [prompts[i] for i in pending], draw)
        still = []
        for i, reply, score in zip(pending, draw, new_scores):
            if score > best[i][0]:
                best[i] = (score, reply)
            if score < design.retry_below:
                still.append(i)
        pending = still
    for i in range(len(prompts)):
        replies[i] = best[i][1]
    if design.abstain:
        for i in pending:
            replies[i] = Reply(ABSTAIN_TEXT)
    return replies


# --- generated blocks -------------------------------------------------------------------------------------
@dataclass
class HostApi:
    """What a generated block may ask of the agent, served in this process for the sandboxed code."""

    agent: Any
    options: dict = field(default_factory=dict)
    seed: int = 0
    calls: int = 0

    def __call__(self, method: str, args: list, kwargs: dict) -> Any:
        from .answer import answer

        self.calls += 1
        if method in ("generate", "generate_many"):
            items = [args[0]] if method == "generate" else list(args[0])
            if not all(isinstance(p, str) for p in items) or len(items) > 256:
                raise ValueError("prompts must be strings (at most 256 at once)")
            temperature = float(kwargs.get("temperature", 0.0))
            think = kwargs.get("think")
            budget = min(int(kwargs.get("max_new_tokens", self.options.get("max_new_tokens", 64))), 512)
            options = {**self.options, "max_new_tokens": budget}
            replies = answer(self.agent, items, temperature=min(max(temperature, 0.0), 2.0), seed=self.seed,
                             think=None if think is None else bool(think), design=False, **options)
            texts = [r.text for r in replies]
            return texts[0] if method == "generate" else texts
        if method == "confidence":  # of an answer when one is given, else the self-model's, of the prompt
            given = kwargs.get("answer", args[1] if len(args) > 1 else None)
            if given is not None:
                return answer_likelihood(self.agent.model, self.agent.tokenizer, [str(args[0])], [str(given)])[0]
            return self_confidence(self.agent.model, self.agent.tokenizer, [str(args[0])])[0]
        if method == "likelihood":
            return answer_likelihood(self.agent.model, self.agent.tokenizer, [str(args[0])], [str(args[1])])[0]
        if method in ("search_memory", "calculate"):
            return self._tool(method, args, kwargs)
        raise ValueError(f"no host method {method!r}")

    def _tool(self, method: str, args: list, kwargs: dict) -> Any:
        from ..tools import ToolCall

        use = self.agent.extensions.get("tools")
        if use is None:
            raise ValueError("this agent has no tools")
        if method == "calculate":
            return use.registry.execute(ToolCall("calculator", {"expression": str(args[0])}))
        arguments = {"query": str(args[0])}
        if len(args) > 1 or "k" in kwargs:
            arguments["k"] = int(kwargs.get("k", args[1] if len(args) > 1 else 3))
        found = use.registry.execute(ToolCall("memory_search", arguments))
        if found == "no results":
            return []
        return [found] if found.startswith("error") else [p for p in found.split(" | ") if p]


def program_source(program: str) -> str:
    """The generated block plus the runner that answers a list of prompts with it: a prompt whose block raises
    gets an empty answer and the others go on; the runner returns the answers, how many failed and the first
    failure (one line)."""
    return program + f"""

def {_PROGRAM_RUNNER}(prompts, agent):
    answers, failed, first = [], 0, None
    for p in prompts:
        try:
            value = {PROGRAM_ENTRY}(p, agent)
            answers.append(value if isinstance(value, str) else str(value))
        except Exception as error:
            answers.append("")
            failed += 1
            if first is None:
                first = (type(error).__name__ + ": " + str(error)).splitlines()[0][:200]
    return {{"answers": answers, "failed": failed, "first_error": first}}
"""


@dataclass
class ProgramRun:
    """How a generated block did on one batch of prompts (`run_program.last_outcome`)."""

    ok: bool
    error: str | None
    host_calls: int


def run_program(agent, prompts: list[str], design: AgentDesign, *, seed: int = 0, limits=None, **options) -> list:
    """Answer with a generated block, run in the sandbox; a run that fails as a whole answers nothing (empty
    replies), a prompt whose block raised answers nothing; `run_program.last_outcome` says which."""
    from ..sandbox import SandboxLimits, run_untrusted
    from .answer import Reply

    options = {k: v for k, v in options.items() if k in ("max_new_tokens", "batch_size", "stop", "max_hook_rounds")}
    host = HostApi(agent, options, seed)
    limits = limits or _SANDBOX_LIMITS.get() or SandboxLimits(cpu_seconds=60.0, wall_seconds=600.0)
    outcome = run_untrusted(program_source(design.program), _PROGRAM_RUNNER, [prompts], host=host,
                            host_methods=HOST_METHODS, limits=limits)
    value = outcome.value if outcome.ok and isinstance(outcome.value, dict) else {}
    answers = value.get("answers")
    if not isinstance(answers, list) or len(answers) != len(prompts):
        answers = [""] * len(prompts)
        error = outcome.error or "the block returned no answers"
    elif value.get("failed"):
        error = f"{value['failed']} of {len(prompts)} prompts failed: {value.get('first_error')}"
    else:
        error = None
    run_program.last_outcome = ProgramRun(error is None, error, outcome.host_calls)
    return [Reply(a if isinstance(a, str) else "") for a in answers]


run_program.last_outcome = None
_SANDBOX_LIMITS: ContextVar = ContextVar("sandbox_limits", default=None)


@contextmanager
def sandbox_limits(limits) -> Iterator[None]:
    """Generated blocks run under `limits` (a `sandbox.SandboxLimits`) while the block runs."""
    token = _SANDBOX_LIMITS.set(limits)
    try:
        yield
    finally:
        _SANDBOX_LIMITS.reset(token)
