"""inference.answer: the same text as plain generation, thoughts when the agent thinks, and working hook points."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from agent_forge.inference import answer
from agent_forge.models import Agent, generate
from agent_forge.models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT, HeadInfo, MixingHead, add_thought_tokens
from agent_forge.models.agent import Thoughts

PROMPTS = ["12+34", "max 9 1 4", "reverse(ab)"]


def _agent(model, tokenizer):
    return Agent(model, copy.deepcopy(tokenizer))


def test_plain_agent_answers_like_generate(tiny_model, tiny_tokenizer):
    agent = _agent(tiny_model, tiny_tokenizer)
    replies = answer(agent, PROMPTS, max_new_tokens=6)
    expected = generate(agent.model, agent.tokenizer, PROMPTS, max_new_tokens=6, batch_size=32, progress=False)
    assert [r.text for r in replies] == expected
    assert all(r.thoughts == [] for r in replies)


def test_thinking_agent_thinks_unless_told_not_to(tiny_model, tiny_tokenizer):
    agent = _agent(tiny_model, tiny_tokenizer)
    tokens, _ = add_thought_tokens(agent.model, agent.tokenizer)
    agent.extensions["thoughts"] = Thoughts(MixingHead(agent.model.config.hidden_size), tokens,
                                            HeadInfo(2, START_OF_THOUGHT, END_OF_THOUGHT))
    thinking = answer(agent, PROMPTS, max_new_tokens=3)
    assert all(len(r.thoughts) >= 1 for r in thinking)
    silent = answer(agent, PROMPTS, max_new_tokens=3, think=False)
    assert all(r.thoughts == [] for r in silent)


class FavourTokenWhileAnswering:
    """An expert-dispatch-like hook: changes the model's computation for the duration of the answers only."""

    def __init__(self, token_id: int):
        self.token_id, self.seen_prompts = token_id, None

    @contextmanager
    def context(self, agent, prompts):
        self.seen_prompts = list(prompts)

        def favour(module, inputs, logits):
            logits = logits.clone()
            logits[..., self.token_id] += 100.0
            return logits

        handle = agent.model.get_output_embeddings().register_forward_hook(favour)
        try:
            yield
        finally:
            handle.remove()


def test_context_hook_is_active_during_the_answer_and_undone_after(tiny_model, tiny_tokenizer):
    agent = _agent(tiny_model, tiny_tokenizer)
    plain = answer(agent, PROMPTS, max_new_tokens=6)
    hook = FavourTokenWhileAnswering(agent.tokenizer.convert_tokens_to_ids("z"))
    hooked = answer(agent, PROMPTS, max_new_tokens=6, hooks=[hook])
    assert hook.seen_prompts == PROMPTS
    assert [r.text for r in hooked] == ["zzzzzz"] * len(PROMPTS)  # the hook decided what was generated
    assert [r.text for r in answer(agent, PROMPTS, max_new_tokens=6)] == [r.text for r in plain]  # and was undone


class AppendOnce:
    """A tool-call-like hook: after the first draft it appends a result, and generation continues from there."""

    def __init__(self, text: str, times: int):
        self.text, self.times, self.calls = text, times, 0

    def continue_after(self, agent, prompt, text):
        if self.calls >= self.times:
            return None
        self.calls += 1
        return self.text


def test_continue_hook_appends_and_generation_goes_on_a_bounded_number_of_times(tiny_model, tiny_tokenizer):
    agent = _agent(tiny_model, tiny_tokenizer)
    first = answer(agent, PROMPTS[:1], max_new_tokens=4)[0].text
    hook = AppendOnce("=7", times=10)
    reply = answer(agent, PROMPTS[:1], max_new_tokens=4, hooks=[hook], max_hook_rounds=2)[0].text
    assert hook.calls == 2  # bounded by max_hook_rounds, not by the hook
    assert reply.startswith(first + "=7")
    assert reply.count("=7") >= 2


def test_generation_evaluation_of_a_thinking_agent_answers_with_thoughts(tiny_model, tiny_tokenizer):
    from agent_forge.evaluation import evaluate_agent
    from agent_forge.tasks import task_grid, verify

    agent = _agent(tiny_model, tiny_tokenizer)
    tokens, _ = add_thought_tokens(agent.model, agent.tokenizer)
    head = MixingHead(agent.model.config.hidden_size)
    with torch.no_grad():
        head.output.weight.normal_()
    agent.extensions["thoughts"] = Thoughts(head, tokens, HeadInfo(2, START_OF_THOUGHT, END_OF_THOUGHT))
    tasks = task_grid(["arithmetic", "strings"], [1], "test", 3, 0)
    report = evaluate_agent(agent, tasks, method="generate")
    from agent_forge.evaluation.generation import _max_new_tokens

    replies = answer(agent, [t.prompt for t in tasks], max_new_tokens=_max_new_tokens(agent.tokenizer, tasks, 8))
    assert all(r.thoughts for r in replies)
    assert [s for *_, s in report.items] == [verify(t, r.text) for t, r in zip(tasks, replies)]
