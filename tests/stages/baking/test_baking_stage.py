"""The baking stage end to end on a tiny ternary model: every planned bake is measured (KL before/after,
half-baking curve, pursuit for identity parts), a bake rejected by validation leaves the weights untouched, the
agent stays ternary, and a run killed between bakes resumes to the same result."""

from __future__ import annotations

import json

import pytest
import torch

from agent_forge.config import ForgeConfig
from agent_forge.config.seed import TinyModelConfig
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, load_agent, save_agent
from agent_forge.models.formats.ternary import convert_to_bitlinear, is_ternary
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.baking import run as run_baking
from agent_forge.stages.baking import stage as stage_module
from agent_forge.tasks import alphabet

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)
SMALL = {"levels": [1], "knowledge_levels": [1], "steps": 4, "batch_size": 4, "trajectories": 6, "samples": 1,
         "max_new_tokens": 8, "val_items": 2, "test_items": 2, "max_bakes": 3, "strength_points": [0, 0.5, 1],
         "pursuit_rounds": 1, "identity": {"drift_turns": [1, 3]}}


@pytest.fixture(scope="module")
def entering(tmp_path_factory):
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    convert_to_bitlinear(model)
    path = tmp_path_factory.mktemp("baking") / "entering"
    save_agent(Agent(model, tok), path)
    return path


def _run(source, stage_dir, **overrides):
    cfg = ForgeConfig.model_validate({"device": "cpu", "baking": SMALL | overrides})
    return run_baking(StageContext.create("baking", cfg, StageInputs(models={"model": source}), stage_dir))


def _weights(path):
    return load_agent(path).model.state_dict()


def test_a_bake_rejected_by_validation_leaves_the_weights_untouched(entering, tmp_path):
    # no bake can gain 100 points: every one is measured, then rejected
    result = _run(entering, tmp_path / "06-baking", min_gain=100)
    m = result.metrics
    assert len(m["bakes"]) == 3 and m["kept"] == [] and not any(b["kept"] for b in m["bakes"])
    for record in m["bakes"]:
        assert record["reasons"] and record["kl_before"] > 0 and len(record["strength_curve"]) == 3
        assert record["strength_curve"][0]["kl"] == pytest.approx(record["kl_before"], rel=1e-4)
    identity = [b for b in m["bakes"] if b["kind"] == "identity"]
    assert identity and all(len(b["pursuit"]) == 2 for b in identity)
    a, b = _weights(entering), _weights(result.models["model"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert m["ternary"] and is_ternary(load_agent(result.models["model"]).model)
    assert (tmp_path / "06-baking" / "strength.png").stat().st_size > 0
    assert set(m["identity"]["drift"]) == {"1", "3"}
    assert set(m["identity"]["leaving"]) == {"questionnaire", "compliance"}
    assert not (tmp_path / ".resume" / "06-baking").exists()
    # the report's table: one row per bake, each saying why validation rejected it
    from agent_forge.pipeline.report_stages import baking_table

    columns, rows, note = baking_table(m)
    assert len(rows) == len(m["bakes"]) and all(len(r) == len(columns) for r in rows)
    assert all("needs +100" in r[-1] for r in rows) and note.startswith("0 of 3 bakes kept")


def test_a_kept_bake_changes_the_weights_and_a_killed_run_resumes(entering, tmp_path, monkeypatch):
    # min_gain 0 and a generous max_drop: a bake whose target does not fall is kept
    overrides = {"min_gain": 0, "max_drop": 100, "max_bakes": 2, "pursuit_rounds": 0}
    straight = _run(entering, tmp_path / "a" / "06-baking", **overrides)
    kept = straight.metrics["kept"]
    assert kept, straight.metrics["bakes"]
    a, b = _weights(entering), _weights(straight.models["model"])
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert is_ternary(load_agent(straight.models["model"]).model)

    calls = {"n": 0}
    real = stage_module.BakingRun._attempt

    def killed_on_second(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(stage_module.BakingRun, "_attempt", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        _run(entering, tmp_path / "b" / "06-baking", **overrides)
    state = json.loads((tmp_path / "b" / ".resume" / "06-baking" / "state.json").read_text())
    assert state["done"][0] == "score" and len(state["done"]) == 2
    monkeypatch.undo()
    resumed = _run(entering, tmp_path / "b" / "06-baking", **overrides)
    assert resumed.metrics["resumed"] and resumed.metrics["kept"] == kept
    c = _weights(resumed.models["model"])
    assert all(torch.equal(b[k], c[k]) for k in b)
