"""Stage 0: the tiny profile builds a base and three specialists of one ancestry; the external profile
refuses models that cannot be merged, saying why."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agent_forge.config import TinyModelConfig, load_config
from agent_forge.errors import ForgeError
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
from agent_forge.stages import StageInputs
from agent_forge.stages import StageContext
from agent_forge.stages.seed import run as run_seed_stage
from agent_forge.tasks import alphabet


def run_seed(cfg, inputs, stage_dir, console=None):
    """Run the seed stage on its own, with the context the pipeline runner would give it."""
    return run_seed_stage(StageContext.create("seed", cfg, inputs, stage_dir, console=console))

SMOKE = "smoke"  # the packaged config (agent_forge/configs/smoke.yaml)


@pytest.fixture(scope="module")
def seed_result(tmp_path_factory):
    cfg = load_config(SMOKE, ["seed_stage.pretrain.steps=12", "seed_stage.finetune.steps=4"])
    out = tmp_path_factory.mktemp("seed")
    return cfg, run_seed(cfg, StageInputs(), out)


def test_tiny_profile_writes_base_and_three_specialists(seed_result):
    cfg, result = seed_result
    assert set(result.models) == {"base", "specialist_arithmetic", "specialist_strings", "specialist_logic"}
    for path in result.models.values():
        model = AutoModelForCausalLM.from_pretrained(path)
        tok = AutoTokenizer.from_pretrained(path)
        assert model.config.hidden_size == cfg.seed_stage.tiny.hidden_size
        assert tok.eos_token is not None
    assert set(result.metrics["specialist_lead"]) == {"arithmetic", "strings", "logic"}
    assert "base" in result.metrics["eval"]


def test_specialists_are_fine_tunes_of_the_base(seed_result):
    _, result = seed_result
    base = AutoModelForCausalLM.from_pretrained(result.models["base"]).state_dict()
    for key in ("specialist_arithmetic", "specialist_logic"):
        spec = AutoModelForCausalLM.from_pretrained(result.models[key]).state_dict()
        delta = sum((spec[k] - base[k]).norm() ** 2 for k in base) ** 0.5
        norm = sum(v.norm() ** 2 for v in base.values()) ** 0.5
        # a fine-tune moved the weights, but stayed close to its ancestor
        assert 0 < delta / norm < 0.5


def test_seed_stage_is_deterministic(seed_result, tmp_path):
    cfg, result = seed_result
    again = run_seed(cfg, StageInputs(), tmp_path)
    a = AutoModelForCausalLM.from_pretrained(result.models["specialist_strings"]).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again.models["specialist_strings"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.metrics["eval"] == result.metrics["eval"]


def _tiny(path: Path, hidden: int, extra_chars: str = "") -> Path:
    tok = build_tiny_tokenizer(alphabet() + extra_chars)
    model = build_tiny_model(tok, TinyModelConfig(hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=2, num_key_value_heads=2), seed=0)
    save_model(model, tok, path)
    return path


def _external_cfg(models: dict[str, Path]):
    overrides = ["seed_stage.profile=external", "seed_stage.eval_levels=[1]", "seed_stage.eval_items_per_level=2"]
    overrides += [f"seed_stage.models.{k}={v}" for k, v in models.items()]
    return load_config(SMOKE, overrides)


def test_external_profile_accepts_compatible_models(tmp_path):
    a, b, c = (_tiny(tmp_path / n, 32) for n in "abc")
    result = run_seed(_external_cfg({"a": a, "b": b, "c": c}), StageInputs(), tmp_path / "stage")
    assert result.models == {"specialist_a": a, "specialist_b": b, "specialist_c": c}


def test_external_profile_rejects_different_shapes(tmp_path):
    a, b, c = _tiny(tmp_path / "a", 32), _tiny(tmp_path / "b", 32), _tiny(tmp_path / "c", 48)
    # the shapes are printed in the order of the names: 'a' (hidden 32) first, 'c' (hidden 48) second
    with pytest.raises(ForgeError, match=r"cannot merge 'a' with 'c': tensor model\.embed_tokens\.weight has shape "
                                         r"\[\d+, 32\] vs \[\d+, 48\]$"):
        run_seed(_external_cfg({"a": a, "b": b, "c": c}), StageInputs(), tmp_path / "stage")


def test_external_profile_rejects_different_vocabularies(tmp_path):
    a, b = _tiny(tmp_path / "a", 32), _tiny(tmp_path / "b", 32)
    c = _tiny(tmp_path / "c", 32, extra_chars="\u00e9")
    with pytest.raises(ForgeError, match="cannot merge"):
        run_seed(_external_cfg({"a": a, "b": b, "c": c}), StageInputs(), tmp_path / "stage")


def test_external_profile_reports_a_missing_model(tmp_path):
    a, b = _tiny(tmp_path / "a", 32), _tiny(tmp_path / "b", 32)
    with pytest.raises(ForgeError, match="not found"):
        run_seed(_external_cfg({"a": a, "b": b, "c": tmp_path / "nope"}), StageInputs(), tmp_path / "stage")


def test_external_profile_needs_three_models():
    with pytest.raises(ForgeError, match="exactly three"):
        load_config(SMOKE, ["seed_stage.profile=external", "seed_stage.models={a: x}"])


def test_external_profile_with_relative_paths_runs_to_completion(tmp_path, monkeypatch):
    """Paths as a user types them, relative to where they stand: resolved at config load, recorded absolute."""
    import json

    import yaml
    from typer.testing import CliRunner

    from agent_forge.cli import app
    from agent_forge.pipeline import Manifest

    work = tmp_path / "work"
    for name in ("arithmetic", "strings", "logic", "base"):
        _tiny(work / "models" / name, 32)
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, [
        "run", "--config", SMOKE, "name=ext", "run_root=runs", "threads=1", "stages=[seed,evomerge]",
        "seed_stage.profile=external",
        "seed_stage.models={arithmetic: models/arithmetic, strings: ./models/strings, logic: models/../models/logic}",
        "seed_stage.base=models/base", "seed_stage.eval_levels=[1]", "seed_stage.eval_items_per_level=2",
        "report.levels=[1, 2]", "report.items_per_level=2",
    ])
    assert result.exit_code == 0, result.output
    run_dir = work / "runs" / "ext"
    manifest = Manifest.load(run_dir)
    assert [r.status for r in manifest.stages.values()] == ["done", "done"]
    models = work / "models"
    assert manifest.stages["seed"].outputs == {
        "specialist_arithmetic": str(models / "arithmetic"), "specialist_strings": str(models / "strings"),
        "specialist_logic": str(models / "logic"), "base": str(models / "base"),
    }
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["seed_stage"]["models"]["logic"] == str(models / "logic")
    assert resolved["seed_stage"]["base"] == str(models / "base") and resolved["run_root"] == str(work / "runs")
    assert json.loads((run_dir / "01-evomerge" / "metrics.json").read_text())["evaluations"] > 0
