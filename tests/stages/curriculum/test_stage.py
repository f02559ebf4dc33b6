"""The curriculum stage end to end on a tiny model: outputs, plots, resume after SIGKILL, ternary kept, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from agent_forge.config import ForgeConfig
from agent_forge.errors import ForgeError
from agent_forge.models import load_model
from agent_forge.stages import StageInputs
from agent_forge.stages import StageContext
from agent_forge.stages.curriculum import run as run_curriculum


def run(cfg, inputs, stage_dir, console=None):
    """Run the curriculum stage on its own, with the context the pipeline runner would give it."""
    return run_curriculum(StageContext.create("curriculum", cfg, inputs, stage_dir, console=console))

SMALL = {
    "domains": ["arithmetic", "logic"], "levels": 2, "max_cycles_per_level": 2, "min_cycles_per_level": 1,
    "val_items": 8, "test_items": 8, "eval_levels_above": 1, "replay_seed_items": 8,
    "assessment": {"items_per_level": 8},
    "cycle": {"prompts": 4, "samples_per_prompt": 2, "max_new_tokens": 8},
    "sleep": {"every": 2, "steps": 1, "batch_size": 4}, "dream": {"every": 2, "prompts": 2, "samples": 2},
    "self_model": {"every": 2, "prompts": 4, "steps": 1, "temperatures": [0.5, 1.0], "calibration_items": 16},
}


def _cfg(**curriculum) -> ForgeConfig:
    return ForgeConfig.model_validate({"device": "cpu", "curriculum": {**SMALL, **curriculum}})


def test_stage_writes_model_metrics_and_plots(trained_tiny, tmp_path):
    source, _, _ = trained_tiny
    result = run(_cfg(), StageInputs(models={"model": source}), tmp_path / "04-curriculum")
    m = result.metrics
    assert set(m["frontier"]) == {"arithmetic", "logic"}
    assert m["levels_trained"] == 2 and m["cycles"] == len(m["history"]) >= 2
    assert all(m["mastered"][d] >= m["frontier"][d] for d in m["frontier"])
    assert 0.0 <= m["ece_before"] <= 1.0 and 0.0 <= m["ece_after"] <= 1.0
    assert m["summary"]["domains_improved"] == len(m["domains_improved"])
    assert m["summary"]["ece"] == f"{m['ece_before']:.3f}->{m['ece_after']:.3f}"
    assert set(m["by_domain"]) == {"arithmetic", "logic"}
    # accuracies are percentages, rounded to 2 decimals, like every accuracy the project records
    recorded = [v for lv in m["levels"] for v in lv["val_accuracy"].values()]
    recorded += [v for lv in m["profile"]["accuracy"].values() for v in lv.values()]
    assert recorded and all(0.0 <= v <= 100.0 and v == round(v, 2) for v in recorded)
    for key in ("success", "reward", "kl", "difficulty"):
        assert key in m["history"][0]
    model, tok = load_model(result.models["model"])
    assert model.config.vocab_size == len(tok)
    plots = tmp_path / "04-curriculum" / "plots"
    assert {p.name for p in plots.iterdir()} == {"cycles.png", "levels.png", "calibration.png"}


def test_the_cycle_budget_stops_the_stage_after_that_many_cycles_in_all(trained_tiny, tmp_path):
    """`max_cycles` counts cycles across levels: the budget ends level 2 after its first cycle and no level 3
    starts; the same budget on any machine (no wall clock involved)."""
    source, _, _ = trained_tiny
    cfg = _cfg(levels=3, max_cycles_per_level=2, min_cycles_per_level=2, max_cycles=3, time_budget_s=None)
    m = run(cfg, StageInputs(models={"model": source}), tmp_path / "04-curriculum").metrics
    assert m["cycles"] == len(m["history"]) == 3
    assert [lv["cycles"] for lv in m["levels"]] == [2, 1] and m["levels_trained"] == 2


def test_killed_run_resumes_at_the_last_finished_level(trained_tiny, tmp_path):
    source, _, _ = trained_tiny
    stage_dir = tmp_path / "stage"
    overrides = {"levels": 2, "max_cycles_per_level": 2, "min_cycles_per_level": 2}
    script = (
        "import sys, json; from pathlib import Path; from agent_forge.config import ForgeConfig;"
        "from agent_forge.stages import StageContext, StageInputs; from agent_forge.stages.curriculum import run;"
        "cfg = ForgeConfig.model_validate(json.loads(sys.argv[1]));"
        "run(StageContext.create('curriculum', cfg, StageInputs(models={'model': Path(sys.argv[2])}), Path(sys.argv[3])))"
    )
    cfg_json = json.dumps({"device": "cpu", "curriculum": {**SMALL, **overrides}})
    proc = subprocess.Popen([sys.executable, "-c", script, cfg_json, str(source), str(stage_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = stage_dir.parent / ".resume" / stage_dir.name / "state.json"
    deadline = time.time() + 300  # a cold interpreter imports torch and transformers first
    try:
        while time.time() < deadline and proc.poll() is None:
            if state_file.is_file() and json.loads(state_file.read_text())["round"] >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    first = json.loads(state_file.read_text())
    assert first["round"] == 1
    result = run(_cfg(**overrides), StageInputs(models={"model": source}), stage_dir)
    m = result.metrics
    assert m["resumed"] and m["levels_trained"] == 2
    # the pipeline deletes an unfinished stage directory before rerunning it; the checkpoint must not live there
    assert not (stage_dir / ".resume").exists() and not (stage_dir / "resume").exists()
    # the finished levels were kept, not retrained: their logs come from the killed run
    assert m["levels"][: first["round"]] == first["levels"]
    assert m["cycles"] == 4


def test_stage_keeps_a_ternary_model_ternary(trained_tiny, tmp_path):
    from agent_forge.models import Agent, load_agent, save_agent, with_thoughts
    from agent_forge.models.formats.ternary import convert_to_bitlinear, is_ternary
    from agent_forge.models.formats.thoughts import HeadInfo, MixingHead, add_thought_tokens

    source, _, _ = trained_tiny
    model, tok = load_model(source)
    tokens, _ = add_thought_tokens(model, tok)
    convert_to_bitlinear(model)
    ternary_in = tmp_path / "ternary"
    head = MixingHead(model.config.hidden_size)
    save_agent(with_thoughts(Agent(model, tok), head, tokens, HeadInfo(2, "<|startofthought|>", "<|endofthought|>")), ternary_in)
    head_bytes = (ternary_in / "quietstar_head.safetensors").read_bytes()
    result = run(_cfg(levels=1), StageInputs(models={"model": ternary_in}), tmp_path / "out")
    # the agent's extensions travel with the model: the thought head (unchanged by the curriculum) and ternary
    assert (result.models["model"] / "quietstar_head.safetensors").read_bytes() == head_bytes
    assert result.metrics["ternary"] == {"entered_ternary": True, "ternary": True}
    agent = load_agent(result.models["model"])
    out = agent.model
    assert is_ternary(out) and agent.thinks
    before = dict(load_model(ternary_in)[0].named_parameters())
    changed = [n for n, p in out.named_parameters() if "proj" in n and not torch.equal(p, before[n])]
    assert changed, "training should have moved the latent weights"


def test_bad_inputs_fail_with_one_line(tmp_path, trained_tiny):
    with pytest.raises(ForgeError, match="unknown domain"):
        run(_cfg(domains=["poetry"]), StageInputs(models={"model": trained_tiny[0]}), tmp_path / "a")
    with pytest.raises(ForgeError, match="needs the previous stage"):
        run(_cfg(), StageInputs(models={}), tmp_path / "b")
    with pytest.raises(ForgeError, match="not found"):
        run(_cfg(), StageInputs(models={"model": tmp_path / "nope"}), tmp_path / "c")


def _check_and_fresh(model, tok, n: int):
    """A (domain, level) where the tiny model scores higher on the check's items than on the fresh ones."""
    from agent_forge.stages.curriculum.assessment import fresh_level_accuracy, level_accuracy

    for domain in ("arithmetic", "logic"):
        for level in (1, 2, 3):
            check = level_accuracy(model, tok, domain, level, "val", n, 0)
            fresh = fresh_level_accuracy(model, tok, domain, level, n, 0)
            if check > fresh:
                return domain, level, check, fresh
    pytest.fail("no level where the check beats the fresh items")


@pytest.mark.parametrize("confirm", [True, False])
def test_a_mastery_crossing_must_hold_on_fresh_items(trained_tiny, tmp_path, confirm):
    """A threshold between the check's score and the fresh items' score advances only without confirmation."""
    from agent_forge.stages.curriculum.controller import PerDomainDifficulty
    from agent_forge.stages.curriculum.cycle import CycleContext
    from agent_forge.stages.curriculum.stage import CurriculumRun

    source, model, tok = trained_tiny
    domain, level, check, fresh = _check_and_fresh(model, tok, SMALL["val_items"])
    cfg = _cfg(mastery_threshold=(check + fresh) / 2, confirm_mastery=confirm)
    stage = CurriculumRun(StageContext.create("curriculum", cfg, StageInputs(models={"model": source}), tmp_path / "stage"))
    ctx = CycleContext(model, tok, None, None, None, PerDomainDifficulty.from_config(cfg.curriculum.controller),
                       cfg.curriculum, 0)
    state, targets, metrics = {"mastered": {domain: level - 1}}, {domain: level}, {}
    stage._advance_mastered(ctx, state, targets, {domain: check}, metrics)
    if confirm:
        assert state["mastered"][domain] == level - 1 and targets == {domain: level}
        assert metrics["confirm_accuracy"] == {domain: round(100 * round(fresh, 4), 2)}  # recorded in percent
    else:
        assert state["mastered"][domain] == level and targets == {domain: level + 1}
        assert "confirm_accuracy" not in metrics
