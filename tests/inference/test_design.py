"""Agent designs: the file round trip, each answer block's behaviour, settings restored after answering."""

from __future__ import annotations

import copy
import json

import pytest

from agent_forge.errors import ForgeError
from agent_forge.inference import answer
from agent_forge.inference.design import ABSTAIN_TEXT, TokenLimitReached, applied_design, counting_cost
from agent_forge.models import Agent, load_agent, save_agent
from agent_forge.models.formats.design import FILE, AgentDesign
from agent_forge.tools import TOOL_CALL_OPEN, ToolUse, builtin_registry

PROMPTS = ["abc", "hgf", "de", "bbaa"]


@pytest.fixture(scope="module")
def copier(train_copier, tiny_tokenizer):
    return Agent(train_copier(120), copy.deepcopy(tiny_tokenizer))


def texts(replies):
    return [r.text for r in replies]


def test_design_round_trips_through_the_agent_folder(tiny_model, tiny_tokenizer, tmp_path):
    design = AgentDesign(name="sc", votes=3, vote_temperature=0.5, layers=1)
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer), extensions={"design": design}), tmp_path / "a")
    assert json.loads((tmp_path / "a" / FILE).read_text())["votes"] == 3
    assert load_agent(tmp_path / "a").extensions["design"] == design


@pytest.mark.parametrize("content", ['{"votes": 0}', '{"tools": "always"}', '{"colour": 1}', "[1]", "{", '{"format": 9}'])
def test_a_bad_design_file_is_a_one_line_error(tiny_model, tiny_tokenizer, tmp_path, content):
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer)), tmp_path / "a")
    (tmp_path / "a" / FILE).write_text(content)
    with pytest.raises(ForgeError) as error:
        load_agent(tmp_path / "a")
    assert FILE in str(error.value) and "\n" not in str(error.value)


def test_canonical_designs_share_a_key_only_when_they_behave_alike():
    assert AgentDesign(thought_length=3).key() == AgentDesign().key()  # no thinking: the length cannot act
    assert AgentDesign(think=True, thought_length=3).key() != AgentDesign(think=True).key()
    assert AgentDesign(retries=3).key() == AgentDesign().key()
    assert AgentDesign(retry_below=0.5, retries=3).key() != AgentDesign(retry_below=0.5).key()
    assert AgentDesign(name="x").key() == AgentDesign(name="y").key()


def test_the_plain_design_answers_exactly_as_no_design(copier):
    plain = answer(copier, PROMPTS, max_new_tokens=8, design=False)
    copier.extensions["design"] = AgentDesign()
    try:
        assert texts(answer(copier, PROMPTS, max_new_tokens=8)) == texts(plain)
    finally:
        copier.extensions.pop("design")


def test_votes_at_temperature_zero_agree_with_greedy(copier):
    greedy = answer(copier, PROMPTS, max_new_tokens=8, design=False)
    voted = answer(copier, PROMPTS, max_new_tokens=8, design=AgentDesign(votes=3, vote_temperature=0.0))
    assert texts(voted) == texts(greedy)


def test_self_consistency_returns_the_most_frequent_sample(copier):
    design = AgentDesign(votes=5, vote_temperature=1.5)
    voted = texts(answer(copier, PROMPTS, max_new_tokens=8, design=design, seed=3))
    samples = [texts(answer(copier, PROMPTS, max_new_tokens=8, temperature=1.5, seed=3 + 1000 * k, design=False))
               for k in range(5)]
    for i, winner in enumerate(voted):
        drawn = [s[i].strip() for s in samples]
        assert drawn.count(winner.strip()) == max(drawn.count(d) for d in drawn)


def test_abstain_and_retry(copier):
    greedy = answer(copier, PROMPTS, max_new_tokens=8, design=False)
    # a threshold no answer misses: nothing is retried
    assert texts(answer(copier, PROMPTS, max_new_tokens=8, design=AgentDesign(retry_below=0.0))) == texts(greedy)
    # a threshold every answer misses, no retries, abstaining: every answer abstains
    design = AgentDesign(retry_below=1.0, retries=0, abstain=True)
    assert texts(answer(copier, PROMPTS, max_new_tokens=8, design=design)) == [ABSTAIN_TEXT] * len(PROMPTS)


def test_self_refine_keeps_the_draft_when_the_self_model_is_sure(copier):
    greedy = answer(copier, PROMPTS, max_new_tokens=8, design=False)
    assert texts(answer(copier, PROMPTS, max_new_tokens=8, design=AgentDesign(refine_below=0.0))) == texts(greedy)
    refined = answer(copier, PROMPTS, max_new_tokens=8, design=AgentDesign(refine_below=1.0), seed=1)
    assert len(refined) == len(PROMPTS)


def test_early_exit_uses_fewer_layers_and_restores_them(copier):
    full = texts(answer(copier, PROMPTS, max_new_tokens=8, design=False))
    with counting_cost(copier, len(PROMPTS)) as cost_full:
        answer(copier, PROMPTS, max_new_tokens=8, design=False)
    with counting_cost(copier, len(PROMPTS)) as cost_short:
        short = texts(answer(copier, PROMPTS, max_new_tokens=8, design=AgentDesign(layers=1)))
    assert copier.model.config.num_hidden_layers == 2
    assert short != full  # one of two trained layers is not the same network
    assert cost_full.tokens > 0 and cost_short.tokens > 0
    assert texts(answer(copier, PROMPTS, max_new_tokens=8, design=False)) == full


def test_tool_policy_first_opens_every_answer_with_a_call_and_off_sets_tools_aside(copier):
    copier.extensions["tools"] = use = ToolUse(builtin_registry(["calculator"]), max_calls=1)
    try:
        first = answer(copier, PROMPTS, max_new_tokens=8, design=AgentDesign(tools="first"))
        assert all(r.text.startswith(TOOL_CALL_OPEN) for r in first)
        with applied_design(copier, AgentDesign(tools="off")):
            assert "tools" not in copier.extensions
        with applied_design(copier, AgentDesign(max_calls=3)):
            assert copier.extensions["tools"].max_calls == 3
        assert copier.extensions["tools"] is use and use.max_calls == 1
    finally:
        copier.extensions.pop("tools")


def test_a_token_limit_stops_answering_at_once_and_leaves_nothing_behind(copier):
    greedy = texts(answer(copier, PROMPTS, max_new_tokens=8, design=False))
    with counting_cost(copier, len(PROMPTS)) as full:
        answer(copier, PROMPTS, max_new_tokens=8, design=False)
    half = full.tokens // 2
    with pytest.raises(TokenLimitReached):
        with counting_cost(copier, len(PROMPTS), token_limit=half) as cut:
            answer(copier, PROMPTS, max_new_tokens=8, design=False)
    assert cut.limit_reached and half < cut.tokens <= full.tokens  # stopped at the first pass over the limit
    with counting_cost(copier, len(PROMPTS), token_limit=full.tokens) as within:
        assert texts(answer(copier, PROMPTS, max_new_tokens=8, design=False)) == greedy
    assert not within.limit_reached and within.tokens == full.tokens
    assert texts(answer(copier, PROMPTS, max_new_tokens=8, design=False)) == greedy  # the counting hook is gone
