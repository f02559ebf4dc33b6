"""The batching engine: greedy rows equal `models.generate` token for token however requests join and leave,
seeded sampling ignores batch-mates, thinking and hook agents go through `inference.answer`, cancel works."""

from __future__ import annotations

import copy
import threading
import time

import pytest

from agent_forge.inference import answer
from agent_forge.models import Agent, generate_token_ids, prompt_format
from agent_forge.models.agent import Thoughts
from agent_forge.models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT, HeadInfo, MixingHead, add_thought_tokens
from agent_forge.serve.engine import Engine, SamplingParams, Sequence

# different lengths, so newcomers are both shorter and longer than the running batch
PROMPTS = ["abc", "h", "abcdefgh", "gfedcba", "aaa", "bcd", "ab", "hgfedcbaabcdefgh", "e", "dcdc",
           "hhhhhhhhhhhhhhhhhhhhhhhh", "fa", "cab", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "d", "gg"]


@pytest.fixture(scope="module")
def copier(train_copier):
    return train_copier(120)


class Collector:
    """Sinks for sequences; waits until every one is done."""

    def __init__(self, count: int):
        self.events: dict[int, list] = {i: [] for i in range(count)}
        self.remaining = count
        self.all_done = threading.Event()
        self.lock = threading.Lock()

    def sink(self, index: int):
        def receive(event):
            with self.lock:
                self.events[index].append(event)
                if event.kind in ("done", "error"):
                    self.remaining -= 1
                    if self.remaining == 0:
                        self.all_done.set()
        return receive

    def wait(self, timeout: float = 60) -> None:
        assert self.all_done.wait(timeout), "the engine did not finish"

    def done(self, index: int):
        return next(e for e in self.events[index] if e.kind == "done")


def run_engine(agent, prompts, params_for, *, max_batch, stagger=0.0, streaming=True):
    fmt = prompt_format(agent.tokenizer)
    engine = Engine(agent, max_batch=max_batch).start()
    collector = Collector(len(prompts))
    sequences = []
    try:
        for i, prompt in enumerate(prompts):
            seq = Sequence(fmt.encode_prompts([prompt])[0], params_for(i), index=i, sink=collector.sink(i),
                           tokenizer=agent.tokenizer, prompt_text=fmt.render(prompt), streaming=streaming)
            sequences.append(seq)
            engine.submit([seq])
            if stagger:
                time.sleep(stagger * (i % 3))
        collector.wait()
    finally:
        engine.stop()
    return engine, sequences, collector


@pytest.mark.parametrize("max_batch", [4, 16])
def test_greedy_rows_equal_generate_token_for_token(copier, tiny_tokenizer, max_batch):
    fmt = prompt_format(tiny_tokenizer)
    agent = Agent(copier, tiny_tokenizer)
    prompts = PROMPTS * 2
    expected = [generate_token_ids(copier, tiny_tokenizer, fmt.encode_prompts([p]), max_new_tokens=12, batch_size=1,
                                   progress=False)[0] for p in prompts]
    assert len({len(e) for e in expected}) >= 3  # rows leave the batch at different steps
    engine, sequences, collector = run_engine(agent, prompts, lambda i: SamplingParams(max_tokens=12),
                                              max_batch=max_batch, stagger=0.002)
    assert [seq.generated for seq in sequences] == expected
    texts = ["".join(e.text for e in collector.events[i] if e.kind == "delta") for i in range(len(prompts))]
    assert texts == [collector.done(i).full_text for i in range(len(prompts))]  # streamed pieces add up
    assert engine.stats.max_rows > 1 and engine.stats.prefills > 1


def test_seeded_sampling_does_not_depend_on_batch_mates(copier, tiny_tokenizer):
    agent = Agent(copier, tiny_tokenizer)
    sampled = SamplingParams(max_tokens=10, temperature=1.3, seed=11)
    _, alone, _ = run_engine(agent, ["abcd"], lambda i: sampled, max_batch=8)
    _, crowded, _ = run_engine(agent, PROMPTS[:5] + ["abcd"] + PROMPTS[5:9],
                               lambda i: sampled if i == 5 else SamplingParams(max_tokens=10, temperature=0.7, seed=i),
                               max_batch=8)
    assert crowded[5].generated == alone[0].generated


def test_non_streaming_sequences_send_only_the_final_text(copier, tiny_tokenizer):
    agent = Agent(copier, tiny_tokenizer)
    _, sequences, collector = run_engine(agent, PROMPTS[:4], lambda i: SamplingParams(max_tokens=12), max_batch=4,
                                         streaming=False)
    for i in range(4):
        assert [e.kind for e in collector.events[i]] == ["done"]
        assert collector.done(i).full_text == tiny_tokenizer.decode(
            [t for t in sequences[i].generated if t != tiny_tokenizer.eos_token_id], skip_special_tokens=True)


def test_cancelled_sequences_leave_the_batch(copier, tiny_tokenizer):
    agent = Agent(copier, tiny_tokenizer)
    fmt = prompt_format(tiny_tokenizer)
    engine = Engine(agent, max_batch=4).start()
    collector = Collector(2)
    try:
        engine.pause()
        keep = Sequence(fmt.encode_prompts(["abc"])[0], SamplingParams(max_tokens=8), index=0, sink=collector.sink(0),
                        tokenizer=tiny_tokenizer)
        drop = Sequence(fmt.encode_prompts(["abc"])[0], SamplingParams(max_tokens=8), index=1, sink=collector.sink(1),
                        tokenizer=tiny_tokenizer)
        engine.submit([keep, drop])
        engine.cancel([drop])
        engine.resume()
        deadline = time.monotonic() + 30
        while not keep.finished:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        engine.stop()
    assert collector.events[1] == [] and drop.generated == []
    assert collector.done(0).finish_reason in ("stop", "length")


def _thinking_agent(model, tokenizer):
    agent = Agent(copy.deepcopy(model), copy.deepcopy(tokenizer))
    tokens, _ = add_thought_tokens(agent.model, agent.tokenizer)
    agent.model.generation_config.suppress_tokens = list(tokens.ids)
    agent.extensions["thoughts"] = Thoughts(MixingHead(agent.model.config.hidden_size), tokens,
                                            HeadInfo(2, START_OF_THOUGHT, END_OF_THOUGHT))
    return agent


def test_thinking_requests_are_answered_with_their_thoughts(copier, tiny_tokenizer):
    agent = _thinking_agent(copier, tiny_tokenizer)
    prompts = PROMPTS[:3]
    thinking = SamplingParams(max_tokens=4, think=True, seed=3)
    _, _, collector = run_engine(agent, prompts, lambda i: thinking, max_batch=8)
    expected = answer(agent, prompts, max_new_tokens=4, seed=3, think=True)
    assert [collector.done(i).full_text for i in range(3)] == [r.text for r in expected]
    assert [collector.done(i).thoughts for i in range(3)] == [r.thoughts for r in expected]
    assert all(collector.done(i).thoughts for i in range(3))
    # think=False: the same agent joins the shared batch and never emits a thought delimiter
    _, sequences, collector = run_engine(agent, prompts, lambda i: SamplingParams(max_tokens=6), max_batch=8)
    assert [collector.done(i).thoughts for i in range(3)] == [[], [], []]
    assert not any(set(agent.thoughts.tokens.ids) & set(s.generated) for s in sequences)


class AppendOnce:
    """A tool-execution-like hook: after the first answer, append a marker and let generation go on."""

    def continue_after(self, agent, prompt, text):
        return None if "|" in text else "|"


def test_agents_with_answer_time_hooks_are_served_through_answer(copier, tiny_tokenizer):
    agent = Agent(copier, tiny_tokenizer, extensions={"tools": AppendOnce()})
    _, _, collector = run_engine(agent, PROMPTS[:3], lambda i: SamplingParams(max_tokens=6, seed=0), max_batch=8)
    expected = answer(agent, PROMPTS[:3], max_new_tokens=6, seed=0)
    assert [collector.done(i).full_text for i in range(3)] == [r.text for r in expected]
    assert all("|" in r.text for r in expected)
