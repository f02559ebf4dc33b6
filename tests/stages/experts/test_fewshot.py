"""Few-shot adaptation: CEM over the experts' mixture weights on a held-out family, in the stage's report."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError

from agent_forge.config import ForgeConfig
from agent_forge.config.seed import TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.evaluation.teacher_forced import teacher_forced
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, save_agent
from agent_forge.models.formats.experts import applied, decompose_model, mix, target_names, z_of
from agent_forge.models.formats.ternary import convert_to_bitlinear
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.experts import run as run_experts
from agent_forge.stages.experts.fewshot import adapt_mixture, parse_family
from agent_forge.tasks import alphabet, make_tasks

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)


def _experts(model, count=3):
    dec = decompose_model(model, target_names(model))
    g = torch.Generator().manual_seed(0)
    return dec, {f"e{k}": {n: z_of(3 * torch.randn(d.rank, generator=g), 2.0) for n, d in dec.items()}
                 for k in range(count)}


def test_a_one_hot_mixture_holds_exactly_the_experts_weights(tiny_model):
    dec, experts = _experts(tiny_model)
    names = sorted(experts)
    with applied(tiny_model, dec, experts["e1"]):
        alone = {n: p.clone() for n, p in tiny_model.named_parameters()}
    with applied(tiny_model, dec, mix([experts[n] for n in names], [0.0, 1.0, 0.0])):
        mixed = dict(tiny_model.named_parameters())
        assert all(torch.equal(mixed[n], alone[n]) for n in alone)


def test_cem_mixture_search_is_deterministic_and_beats_its_starting_mixture(tiny_model, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    dec, experts = _experts(tiny_model)
    shots = make_tasks("logic", 1, "train", 4, seed=3)
    before = {n: p.clone() for n, p in tiny_model.state_dict().items()}
    a = adapt_mixture(tiny_model, tok, dec, experts, shots, population=8, iterations=2, seed=5)
    b = adapt_mixture(tiny_model, tok, dec, experts, shots, population=8, iterations=2, seed=5)
    assert a.weights == b.weights and a.history == b.history and a.evaluations == 1 + 2 * 8
    assert set(a.weights) == set(experts) and all(0.0 <= w <= 1.0 for w in a.weights.values())
    # the uniform mixture (the box's centre) is the first candidate: the result is never worse than it
    with applied(tiny_model, dec, mix([experts[n] for n in sorted(experts)], [0.5, 0.5, 0.5])):
        centre = teacher_forced(tiny_model, tok, shots)
    assert (a.exact, a.loglik) >= (sum(centre.exact), sum(centre.loglik) / len(shots))
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())  # weights restored


def test_family_names_and_held_out_checks():
    assert parse_family("logic") == ("logic", None) and parse_family("arithmetic:7") == ("arithmetic", 7)
    with pytest.raises(ForgeError, match="cem_family"):
        parse_family("logic:x")
    ForgeConfig.model_validate({"experts": {"cem_family": "arithmetic:7"}})
    with pytest.raises(ValidationError, match="not held out"):
        ForgeConfig.model_validate({"experts": {"cem_family": "arithmetic"}})
    with pytest.raises(ValidationError, match="not held out"):
        ForgeConfig.model_validate({"experts": {"cem_family": "arithmetic:3"}})


def test_the_stage_reports_base_against_the_cem_mixture_on_the_held_out_family(tmp_path):
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    convert_to_bitlinear(model, sub_norm=True)
    save_agent(Agent(model, tok), tmp_path / "entering")
    experts = {"domains": ["arithmetic", "strings"], "levels": [1], "steps": 1, "prompts_per_step": 2,
               "samples_per_prompt": 2, "max_new_tokens": 6, "val_every": 1, "val_items": 4, "test_items": 4,
               "router_items": 8, "cem_family": "logic", "cem_shots": 4, "cem_population": 4, "cem_iterations": 1,
               "cem_test_items": 6}
    cfg = ForgeConfig.model_validate({"device": "cpu", "experts": experts})
    ctx = StageContext.create("experts", cfg, StageInputs(models={"model": tmp_path / "entering"}), tmp_path / "05")
    few = run_experts(ctx).metrics["few_shot"]
    assert few["family"] == "logic" and few["shots"] == 4 and few["test_items"] == 6
    assert set(few["weights"]) == {"arithmetic", "strings"} and few["evaluations"] == 5
    assert set(few["test_accuracy"]) == {"base", "cem_mixture"}
    assert all(0.0 <= v <= 100.0 for v in few["test_accuracy"].values())
    diff = few["difference"]
    assert diff["mean"] == pytest.approx(few["test_accuracy"]["cem_mixture"] - few["test_accuracy"]["base"], abs=0.01)
    assert diff["low"] <= diff["mean"] <= diff["high"]
    from agent_forge.pipeline.report_stages import _few_shot_text

    assert "Few-shot adaptation to logic" in _few_shot_text(few) and "paired bootstrap" in _few_shot_text(few)
    bad = ForgeConfig.model_validate({"device": "cpu", "experts": {**experts, "cem_family": "poetry"}})
    with pytest.raises(ForgeError, match="unknown domain 'poetry'"):
        run_experts(StageContext.create("experts", bad, StageInputs(models={"model": tmp_path / "entering"}),
                                        tmp_path / "06"))
