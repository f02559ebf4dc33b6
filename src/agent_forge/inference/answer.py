"""Answering prompts with an agent: plain or thinking generation, and the hook points later stages plug into.

`answer(agent, prompts)` is what `chat`, `eval --method generate` and (later) the server call. It thinks when
the agent has a Quiet-STaR head (unless `think=False`), generates plainly otherwise, and runs the agent's
hooks around it:

* `AnswerHook.context(agent, prompts)`: a context manager held while the prompts are answered (expert
  dispatch applies the chosen expert's weights here and restores them on exit);
* `AnswerHook.continue_after(agent, prompt, text)`: text to append before generating further, or None
  (tool calls: the runtime executes the call, appends its result and generation continues), at most
  `max_hook_rounds` times per answer.

Hooks come from the agent's extensions (any extension object with these methods) and from the caller.

An agent that carries a design (`agent.extensions["design"]`, written by the ADAS stage) answers through it
(`inference.design`): the design decides thinking, sampling, votes, refinement and tool policy; the caller's
length, batch and stop settings apply to each of its generations. `design=False` answers plainly.
`prefix` is text every answer starts with (the generation continues after it; hooks see it).
Exercise: `pytest tests/inference/test_answer.py`.
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any, ContextManager, Protocol, Sequence

from ..models import Agent, generate, prompt_format
from .thinking import generate_with_thoughts


@dataclass
class Reply:
    """One answer: the visible text and the thoughts it was produced with (empty when not thinking)."""

    text: str
    thoughts: list[str] = field(default_factory=list)


class AnswerHook(Protocol):
    def context(self, agent: Agent, prompts: Sequence[str]) -> ContextManager[Any]: ...

    def continue_after(self, agent: Agent, prompt: str, text: str) -> str | None: ...


def agent_hooks(agent: Agent, extra: Sequence[Any] = ()) -> list[Any]:
    """The agent's extensions that act at answer time, then the caller's hooks."""
    found = [ext for ext in agent.extensions.values() if hasattr(ext, "context") or hasattr(ext, "continue_after")]
    return found + list(extra)


def answer(
    agent: Agent,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    think: bool | None = None,
    batch_size: int = 32,
    stop: Sequence[str] | None = None,
    render: bool = True,
    hooks: Sequence[Any] = (),
    max_hook_rounds: int = 4,
    progress: bool = False,
    keep_special_tokens: bool = False,
    prefix: str = "",
    design: Any = None,
) -> list[Reply]:
    """One `Reply` per prompt. `think=None` thinks exactly when the agent has a thought head.

    `keep_special_tokens` leaves special tokens in plainly generated text (chat shows delimiter spans that a
    model without a head wrote itself).
    """
    chosen = agent.extensions.get("design") if design is None else (design or None)
    if chosen is not None:
        from .design import answer_with_design

        return answer_with_design(agent, prompts, chosen, seed=seed, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, stop=stop, render=render, hooks=hooks,
                                  max_hook_rounds=max_hook_rounds, progress=progress,
                                  keep_special_tokens=keep_special_tokens)
    active = agent_hooks(agent, hooks)
    thinking = agent.thinks if think is None else (think and agent.thinks)
    # a hook may ask generation to pause at a string (a tool call's end), so that it can act there
    stop = list(dict.fromkeys([*(stop or ()), *(s for h in active for s in getattr(h, "stop_strings", ()))])) or None
    with ExitStack() as stack:
        for hook in active:
            context = getattr(hook, "context", None)
            stack.enter_context(context(agent, prompts) if context else nullcontext())
        first = list(prompts)
        if prefix:  # the answers open with `prefix`: generate after the rendered prompt and it
            fmt = prompt_format(agent.tokenizer) if render else None
            first = [(fmt.render(p) if fmt else p) + prefix for p in prompts]
        replies = _generate(agent, first, thinking, max_new_tokens=max_new_tokens, temperature=temperature,
                            seed=seed, batch_size=batch_size, stop=stop, render=render and not prefix,
                            progress=progress, skip_special_tokens=not keep_special_tokens)
        if prefix:
            replies = [Reply(prefix + r.text, r.thoughts) for r in replies]
        continuers = [h for h in active if hasattr(h, "continue_after")]
        if continuers:
            replies = _continue(agent, list(prompts), replies, continuers, thinking, max_hook_rounds,
                                max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop=stop,
                                render=render, batch_size=batch_size)
    return replies


def _generate(agent: Agent, prompts: list[str], thinking: bool, *, max_new_tokens: int, temperature: float, seed: int,
              batch_size: int, stop, render: bool, progress: bool, skip_special_tokens: bool = True) -> list[Reply]:
    if thinking:
        thoughts = agent.thoughts
        answers = generate_with_thoughts(
            agent.model, agent.tokenizer, thoughts.head, prompts, thought_length=thoughts.thought_length,
            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, batch_size=batch_size,
            stop=stop, render=render, tokens=thoughts.tokens, progress=progress,
        )
        return [Reply(a.answer, list(a.thoughts)) for a in answers]
    texts = generate(
        agent.model, agent.tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
        batch_size=batch_size, seed=seed, stop=list(stop) if stop else None, render=render, progress=progress,
        skip_special_tokens=skip_special_tokens,
    )
    return [Reply(t) for t in texts]


def _continue(agent: Agent, prompts: list[str], replies: list[Reply], hooks: list[Any], thinking: bool, rounds: int,
              *, max_new_tokens: int, temperature: float, seed: int, stop, render: bool, batch_size: int) -> list[Reply]:
    """Let hooks extend the answers (e.g. with a tool result) and generate on from there, `rounds` times at most.

    Round by round, every answer a hook extended is continued in one batched generation (a tool-using agent
    answering many prompts costs a few batched passes, not one pass per call).
    """
    texts = [r.text for r in replies]
    thoughts = [list(r.thoughts) for r in replies]
    active = list(range(len(prompts)))
    fmt = prompt_format(agent.tokenizer) if render else None
    for _ in range(rounds):
        extended = []
        for i in active:
            addition = next((a for h in hooks if (a := h.continue_after(agent, prompts[i], texts[i])) is not None), None)
            if addition is not None:
                texts[i] += addition
                extended.append(i)
        if not extended:
            break
        # the continuation is generated after the prompt and everything answered so far, as one rendered turn
        so_far = [(fmt.render(prompts[i]) if fmt else prompts[i]) + texts[i] for i in extended]
        more = _generate(agent, so_far, thinking, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                         batch_size=batch_size, stop=stop, render=False, progress=False)
        for i, reply in zip(extended, more):
            texts[i] += reply.text
            thoughts[i] += reply.thoughts
        active = extended
    return [Reply(t, th) for t, th in zip(texts, thoughts)]
