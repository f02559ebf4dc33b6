"""Tool-use traces: the facts program answers every question form correctly, traces carry the runtime's real
responses, and the segment encoding trains on the model's text only."""

from __future__ import annotations

import random

import pytest

from agent_forge.models import build_tiny_tokenizer, encode_segments
from agent_forge.stages.tools.stage import segments_of
from agent_forge.memory import MemoryStore, register_memory_tools
from agent_forge.stages.tools.traces import arithmetic_trace, facts_program, facts_trace, no_call_trace, registry_runner
from agent_forge.tasks import DOMAINS, KnowledgeBase, make_tasks
from agent_forge.tools import TOOL_RESPONSE_OPEN, ToolRegistry, builtin_registry, final_answer
from agent_forge.tools.calls import ToolCall


@pytest.mark.parametrize("level", range(1, 11))
def test_the_facts_program_answers_every_question_form(level):
    kb = KnowledgeBase.build(3)
    tasks = make_tasks("facts", level, "train", 60, seed=11, world_seed=3)
    for task in tasks:
        program = facts_program(task.prompt, kb)
        assert program is not None, task.prompt
        steps, answer = program
        assert answer == task.answer, task.prompt
        # one search per needed fact (the two-fact region question and comparisons included)
        assert len(steps) == task.meta["work"], (task.prompt, [s.query for s in steps])
        assert steps[-1].after is None and all(s.after for s in steps[:-1])


def test_an_unknown_question_form_has_no_program():
    kb = KnowledgeBase.build(0)
    assert facts_program("what is the capital of nowhere?", kb) is None
    assert facts_program("who is the friend of nobodyknown?", kb) is None


def _calculator_runner():
    registry = builtin_registry(["calculator"])
    return lambda name, arguments: registry.execute(ToolCall(name, arguments))


def test_arithmetic_trace_calls_the_calculator_and_writes_the_reversed_result():
    task = DOMAINS["arithmetic"].sample(9, random.Random(4))
    trace = arithmetic_trace(task, _calculator_runner())
    call, response, answer = trace.segments
    assert call[1] and not response[1] and answer == (task.answer, True)
    assert '"expression":"' + task.prompt.split(" ")[0] + '"' in call[0]
    assert response[0] == f"<tool_response>{task.meta['value']}</tool_response>"
    assert final_answer(trace.text) == task.answer and trace.calls == 1
    assert no_call_trace(task).segments == ((task.answer, True),)


def test_facts_trace_uses_real_search_results_and_refuses_when_the_fact_is_missing():
    kb = KnowledgeBase.build(0)
    task = make_tasks("facts", 4, "train", 1, seed=2, world_seed=0)[0]
    statements = set(kb.statements())

    def search_all(name, arguments):  # a search that returns every needed passage
        return " | ".join(sorted(statements))

    trace = facts_trace(task, kb, search_all)
    assert trace is not None and final_answer(trace.text) == task.answer
    assert trace.calls == task.meta["work"]
    assert facts_trace(task, kb, lambda name, arguments: "no results") is None


@pytest.mark.parametrize("level", [1, 4, 10])
def test_each_search_asks_for_its_sentence_and_finds_it_as_the_one_passage(tmp_path, level):
    """A BM25 store (no vectors) and one passage per search, as the tools stage searches: every trace of every
    question form is trainable, because the opening of the needed sentence ranks that sentence first."""
    kb = KnowledgeBase.build(0)
    store = tmp_path / "kb.db"
    with MemoryStore(store, embedder=None) as memory:
        memory.write_many(kb.statements())
    registry = ToolRegistry()
    with MemoryStore(store, embedder=None, read_only=True) as memory:
        register_memory_tools(registry, memory, names=["memory_search"], default_k=1)
        run = registry_runner(registry)
        for task in make_tasks("facts", level, "train", 30, seed=5, world_seed=0):
            steps, _ = facts_program(task.prompt, kb)
            assert all(step.needed.startswith(step.query + " ") for step in steps)
            trace = facts_trace(task, kb, run)
            assert trace is not None and final_answer(trace.text) == task.answer, task.prompt
            responses = [text for text, by_model in trace.segments if not by_model]
            assert all(" | " not in r for r in responses) and len(responses) == task.meta["work"]


def test_segments_split_model_text_from_tool_responses_and_mask_them():
    text = '<tool_call>{"name":"calculator"}</tool_call><tool_response>42</tool_response>24'
    segments = segments_of(text)
    assert segments == [('<tool_call>{"name":"calculator"}</tool_call>', True),
                        ("<tool_response>42</tool_response>", False), ("24", True)]
    assert "".join(s for s, _ in segments) == text
    tok = build_tiny_tokenizer(["abc 0123456789 <>/_{}\":"] + [text])
    batch = encode_segments(tok, ["q"], [segments])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    trained = tok.decode([int(i) for i, l in zip(ids, labels) if l != -100])
    assert TOOL_RESPONSE_OPEN not in trained and "42" not in trained and trained.endswith("24" + tok.decode([ids[-1]]))
