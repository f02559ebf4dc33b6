"""The tools stage end to end on a tiny ternary model: the agent it writes carries its tools and a snapshot of
the memory store, stays ternary, is deterministic, and resumes after a kill between phases."""

from __future__ import annotations

import json

import pytest
import torch

from agent_forge.config import ForgeConfig
from agent_forge.config.seed import TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, load_agent, save_agent
from agent_forge.models.formats.ternary import convert_to_bitlinear, is_ternary
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.tools import run as run_tools
from agent_forge.stages.tools import stage as stage_module
from agent_forge.tasks import alphabet
from agent_forge.tools import TOOL_CALL_OPEN, ToolCall

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)
SMALL = {"levels": [1, 3], "call_below": 100, "sft_steps": 3, "batch_size": 4, "rl_steps": 1, "rl_prompts": 2,
         "rl_samples": 2, "val_items": 2, "test_items": 2, "max_calls": 2, "require_gain": False}


@pytest.fixture(scope="module")
def entering(tmp_path_factory):
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    convert_to_bitlinear(model, sub_norm=True)
    path = tmp_path_factory.mktemp("tools") / "entering"
    save_agent(Agent(model, tok), path)
    return path


def _run(source, stage_dir, **overrides):
    cfg = ForgeConfig.model_validate({"device": "cpu", "tools": SMALL | overrides})
    return run_tools(StageContext.create("tools", cfg, StageInputs(models={"model": source}), stage_dir))


def test_stage_writes_a_ternary_agent_with_tools_and_memory_and_resumes(entering, tmp_path, monkeypatch):
    straight = _run(entering, tmp_path / "a" / "07-tools")
    m = straight.metrics
    assert m["tool_levels"] == {"arithmetic": [1, 3], "facts": [1, 3]}  # an untrained model needs its tools everywhere
    assert set(m["test"]) == {"arithmetic", "strings", "logic", "facts"}
    assert m["training"]["sft"]["tool_traces"] > 0 and set(m["selection_val_accuracy"]) == {"sft", "rl"}
    folder = straight.models["model"]
    spec = json.loads((folder / "tools.json").read_text())
    assert spec["tools"] == ["calculator", "memory_search"] and spec["memory"] == "memory.db" and spec["memory_k"] == 1
    agent = load_agent(folder)
    assert is_ternary(agent.model)
    assert TOOL_CALL_OPEN in agent.tokenizer.get_vocab()
    # the memory travels with the agent: its search finds the knowledge base's facts
    found = agent.extensions["tools"].registry.execute(ToolCall("memory_search", {"query": "belenan lives in"}))
    assert found == "belenan lives in befvik."  # one passage (memory_k), the sentence that opens with the query
    several = agent.extensions["tools"].registry.execute(ToolCall("memory_search", {"query": "belenan", "k": 3}))
    assert len(several.split(" | ")) == 3
    assert not (tmp_path / "a" / ".resume" / "07-tools").exists()

    # killed after the supervised phase: the rerun resumes from it and ends where the straight run ended
    def killed(self, agent, frontier):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage_module.ToolsRun, "_reinforce", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(entering, tmp_path / "b" / "07-tools")
    state = json.loads((tmp_path / "b" / ".resume" / "07-tools" / "state.json").read_text())
    assert state["done"] == ["memory", "sft"]
    monkeypatch.undo()
    resumed = _run(entering, tmp_path / "b" / "07-tools")
    assert resumed.metrics["resumed"] and resumed.metrics["test"] == m["test"]
    a, b = load_agent(folder).model.state_dict(), load_agent(resumed.models["model"]).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_trained_model_without_a_validation_gain_is_not_passed_on(entering, tmp_path):
    """With `require_gain`, the entering agent competes on validation; three supervised steps on a random model
    gain nothing, so the stage passes the entering weights on, with the tools attached, and says so."""
    result = _run(entering, tmp_path / "07-tools", rl_steps=0, require_gain=True)
    m = result.metrics
    selection = m["selection_val_accuracy"]
    assert set(selection) == {"entering", "sft"}
    assert selection["entering"] >= selection["sft"] and m["chosen"] == "entering"
    kept, before = load_agent(result.models["model"]), load_agent(entering)
    a, b = kept.model.state_dict(), before.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert TOOL_CALL_OPEN not in kept.tokenizer.get_vocab()  # untrained for tools: the vocabulary is unchanged
    assert kept.extensions["tools"].registry.names == ["calculator", "memory_search"]


def test_stage_refuses_a_packed_input(entering, tmp_path):
    agent = load_agent(entering)
    save_agent(agent, tmp_path / "packed", packed=True)
    with pytest.raises(ForgeError, match="latent"):
        _run(tmp_path / "packed", tmp_path / "07-tools")


def test_focus_draws_failing_levels_in_proportion_to_their_error_rate():
    import random

    weights = stage_module.focus_weights({"mastered": 1.0, "half": 0.5, "failing": 0.0}, floor=0.1)
    assert weights == {"mastered": 0.1, "half": 0.5, "failing": 1.0}
    rng = random.Random(0)
    draws = rng.choices(list(weights), weights=list(weights.values()), k=16000)
    share = {k: draws.count(k) / len(draws) for k in weights}
    assert share["failing"] == pytest.approx(1.0 / 1.6, abs=0.02)
    assert share["mastered"] == pytest.approx(0.1 / 1.6, abs=0.02)


def test_focus_measures_every_tool_level_during_training(entering, tmp_path):
    m = _run(entering, tmp_path / "07-tools", sft_steps=5, focus_every=2, focus_items=2, rl_steps=0).metrics
    focus = m["training"]["sft"]["focus"]
    assert [f["step"] for f in focus] == [2, 4]
    assert all(set(f["accuracy"]) == {"arithmetic/1", "arithmetic/3", "facts/1", "facts/3"} for f in focus)
    assert all(0 <= v <= 100 for f in focus for v in f["accuracy"].values())
