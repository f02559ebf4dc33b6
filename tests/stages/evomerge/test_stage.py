"""The EvoMerge stage end to end on tiny saved models: outputs, metrics, report, resume, and early errors.

The models are random tiny Llamas (specialists = perturbed copies of a base), so accuracies are near zero;
what is tested is the machinery. The acceptance numbers come from the default tiny run (see the README).
Run: `python -m pytest tests/stages/evomerge/test_stage.py`.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from agent_forge.config import ForgeConfig, TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, load_model, save_model
from agent_forge.stages import STAGES, StageInputs
from agent_forge.stages import StageContext
from agent_forge.stages.evomerge import run as run_evomerge
from agent_forge.tasks import alphabet


def run(cfg, inputs, stage_dir, console=None):
    """Run the evomerge stage on its own, with the context the pipeline runner would give it."""
    return run_evomerge(StageContext.create("evomerge", cfg, inputs, stage_dir, console=console))

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, max_position_embeddings=128)


def _perturbed(model, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def seed_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed")
    tok = build_tiny_tokenizer(alphabet())
    paths = {"base": root / "base"}
    save_model(build_tiny_model(tok, TINY, seed=0), tok, paths["base"])
    for i, domain in enumerate(["arithmetic", "strings", "logic"]):
        paths[f"specialist_{domain}"] = root / f"specialist_{domain}"
        save_model(_perturbed(build_tiny_model(tok, TINY, seed=0), 0.02, i + 1), tok, paths[f"specialist_{domain}"])
    return paths


def _cfg(**evomerge) -> ForgeConfig:
    settings = dict(population_size=14, generations=2, patience=2, levels=[1], val_items_per_level=4, batch_size=32)
    settings.update(evomerge)
    return ForgeConfig.model_validate({
        "device": "cpu", "stages": ["seed", "evomerge"],
        "seed_stage": {"tiny": TINY.model_dump(), "eval_levels": [1], "eval_items_per_level": 4},
        "evomerge": settings,
    })


def test_stage_is_registered_after_seed():
    names = list(STAGES)
    assert names.index("evomerge") == names.index("seed") + 1


def test_stage_saves_a_loadable_champion_with_metrics_lineage_and_plot(seed_outputs, tmp_path):
    stage_dir = tmp_path / "run" / "01-evomerge"
    stage_dir.mkdir(parents=True)
    result = run(_cfg(), StageInputs(models=dict(seed_outputs)), stage_dir)
    assert result.models == {"model": stage_dir / "model"}
    model, tok = load_model(stage_dir / "model", device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(stage_dir / "model")
    assert plain.config.model_type == "llama" and tok.get_vocab() == load_model(seed_outputs["base"])[1].get_vocab()
    m = result.metrics
    assert set(m["test_mean_over_domains"]) == {"champion", "uniform_linear", "base", "specialist_arithmetic",
                                               "specialist_strings", "specialist_logic"}
    assert m["champion"]["recipe"]["interp"] or m["champion"]["recipe"]["vector"]
    assert len(m["history"]) == 2 and m["evaluations"] >= 14
    lineage = [json.loads(line) for line in (stage_dir / "lineage.jsonl").read_text().splitlines()]
    assert len(lineage) == m["evaluations"]
    assert m["champion"]["val_fitness"]["score"] == max(r["fitness"]["score"] for r in lineage)
    # the baselines and the parents themselves take part in the search, so the champion is at least as good
    given = [r["label"] for r in lineage if r["origin"] == "given"]
    # the uniform average, then task arithmetic over every non-empty subset of the parents (each parent alone,
    # each pair, all of them)
    n_parents = sum(1 for k in seed_outputs if k.startswith("specialist_"))
    assert given == ["linear"] + ["task_arithmetic"] * (2**n_parents - 1)
    assert (stage_dir / "evolution.png").stat().st_size > 1000
    # the champion in model/ is the recipe the metrics name: rebuilding it gives the same logits
    from agent_forge.stages.evomerge.recipe import Recipe

    from agent_forge.stages.evomerge.build import RecipeBuilder, mergeable_state_dict
    from agent_forge.stages.evomerge.groups import LayerGrouping
    from agent_forge.stages.evomerge.space import SearchSpace

    champion_id = m["champion"]["id"]
    recipe = Recipe.from_json(next(r["recipe"] for r in lineage if r["id"] == champion_id))
    assert recipe.label() == m["champion"]["label"]
    sources = [load_model(seed_outputs[k], device="cpu")[0] for k in
               ("base", "specialist_arithmetic", "specialist_strings", "specialist_logic")]
    grouping = LayerGrouping(2)
    space = SearchSpace(num_models=3, num_layers=2, num_groups=grouping.num_groups)
    builder = RecipeBuilder(mergeable_state_dict(sources[0]), [mergeable_state_dict(x) for x in sources[1:]],
                            sources[0].config, space, grouping)
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        assert torch.allclose(builder.fresh_model(recipe)(ids).logits, model(ids).logits, atol=1e-6)


def test_rerunning_a_finished_search_reuses_its_checkpoint(seed_outputs, tmp_path):
    stage_dir = tmp_path / "run" / "01-evomerge"
    stage_dir.mkdir(parents=True)
    first = run(_cfg(), StageInputs(models=dict(seed_outputs)), stage_dir)
    # the pipeline deletes an unfinished stage's directory before rerunning it; the checkpoint lives beside it
    import shutil

    shutil.rmtree(stage_dir)
    stage_dir.mkdir()
    second = run(_cfg(), StageInputs(models=dict(seed_outputs)), stage_dir)
    assert second.metrics["champion"] == first.metrics["champion"]
    assert second.metrics["evaluations"] == first.metrics["evaluations"]
    # a different setting is a different search: the old checkpoint is not reused
    third = run(_cfg(population_size=6), StageInputs(models=dict(seed_outputs)), stage_dir)
    assert third.metrics["evaluations"] != first.metrics["evaluations"]


def test_cmaes_optimizer_runs_the_stage(seed_outputs, tmp_path):
    pytest.importorskip("cma")
    stage_dir = tmp_path / "01-evomerge"
    stage_dir.mkdir()
    result = run(_cfg(optimizer="cmaes", population_size=4), StageInputs(models=dict(seed_outputs)), stage_dir)
    assert result.metrics["champion"]["label"] == "task_arithmetic" and result.metrics["optimizer"] == "cmaes"


def test_incompatible_specialists_fail_before_any_search(seed_outputs, tmp_path):
    other_tok = build_tiny_tokenizer(["just a few letters"])
    odd = tmp_path / "odd"
    save_model(build_tiny_model(other_tok, TINY, seed=0), other_tok, odd)
    stage_dir = tmp_path / "01-evomerge"
    stage_dir.mkdir()
    with pytest.raises(ForgeError, match="cannot merge"):
        run(_cfg(), StageInputs(models={**seed_outputs, "specialist_logic": odd}), stage_dir)
    assert not (tmp_path / ".resume").exists()
    with pytest.raises(ForgeError, match="at least two"):
        run(_cfg(), StageInputs(models={"base": seed_outputs["base"]}), stage_dir)


def test_retain_objective_charges_each_point_of_gain_a_merge_loses():
    from agent_forge.stages.evomerge.fitness import objective_value, retained_shares

    reference = {"arithmetic": (20.0, 60.0), "strings": (50.0, 90.0), "logic": (30.0, 30.0)}  # logic: no gain
    keeps_all = {"arithmetic": 52.0, "strings": 82.0, "logic": 40.0}  # 80% and 80% kept
    drops_one = {"arithmetic": 30.0, "strings": 90.0, "logic": 60.0}  # 25% kept of arithmetic, higher mean
    assert retained_shares(keeps_all, reference) == pytest.approx({"arithmetic": 0.8, "strings": 0.8})
    assert objective_value(keeps_all, "retain", reference) == pytest.approx(58.0)  # no shortfall: the mean
    # 70% - 25% = 45% short of the arithmetic gain: 45 points off a mean of 60
    assert objective_value(drops_one, "retain", reference) == pytest.approx(60.0 - 45.0)
    assert objective_value(drops_one, "mean") > objective_value(keeps_all, "mean")  # plain mean prefers it
    assert objective_value(drops_one, "retain", reference, keep_share=0.2) == pytest.approx(60.0)
    with pytest.raises(ForgeError, match="retain"):
        objective_value(keeps_all, "retain")


def test_retain_objective_runs_the_stage_with_shares_in_the_lineage(seed_outputs, tmp_path):
    stage_dir = tmp_path / "01-evomerge"
    stage_dir.mkdir()
    result = run(_cfg(objective="retain", population_size=6, generations=1), StageInputs(models=dict(seed_outputs)),
                 stage_dir)
    lineage = [json.loads(line) for line in (stage_dir / "lineage.jsonl").read_text().splitlines()]
    for record in lineage:
        details = record["fitness"]["details"]
        assert "val_retained_share" in details  # empty where no specialist gained over the random base
        assert record["fitness"]["score"] <= sum(details["val_accuracy_by_domain"].values()) / 3 + 1e-9
    assert result.metrics["champion"]["val_fitness"]["score"] == max(r["fitness"]["score"] for r in lineage)


def test_retain_objective_without_a_base_is_a_one_line_error(seed_outputs, tmp_path):
    from agent_forge.stages.evomerge.fitness import FitnessSpec
    from agent_forge.stages.evomerge.space import SearchSpace

    spec = FitnessSpec(base=None, specialists=tuple(str(seed_outputs[f"specialist_{d}"]) for d in ("arithmetic", "strings", "logic")),
                       domains=("arithmetic", "strings", "logic"), levels=(1,), items_per_level=2, seed=0, batch_size=8,
                       objective="retain", space=SearchSpace(num_models=3, num_layers=2, num_groups=2),
                       layers_per_group=1)
    with pytest.raises(ForgeError, match="needs the specialists' base"):
        spec.build()
