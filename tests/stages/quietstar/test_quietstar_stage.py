"""The stage end to end on a tiny model: trains, compares with plain fine-tuning, saves a loadable output."""

from __future__ import annotations

import json

import pytest
import torch
from quietstar_helpers import TINY
from rich.console import Console
from safetensors.torch import load_file

from agent_forge.config import load_config
from agent_forge.errors import ForgeError
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, load_model, save_model
from agent_forge.stages import STAGES, StageInputs, resolve_stage
from agent_forge.inference import generate_with_thoughts
from agent_forge.models import load_agent
from agent_forge.stages import StageContext
from agent_forge.stages.quietstar import run as run_quietstar
from agent_forge.tasks import alphabet


def run(cfg, inputs, stage_dir, console=None):
    """Run the quietstar stage on its own, with the context the pipeline runner would give it."""
    return run_quietstar(StageContext.create("quietstar", cfg, inputs, stage_dir, console=console))

OVERRIDES = [
    "quietstar.train.steps=3", "quietstar.train.batch_size=4", "quietstar.train.warmup_steps=1",
    "quietstar.thought_length=2", "quietstar.n_true=2", "quietstar.eval_items_per_level=3",
    "quietstar.domains=[arithmetic,logic]", "quietstar.levels=[1,3]", "quietstar.max_new_tokens=6", "device=cpu",
]


@pytest.fixture
def input_model(tmp_path):
    tokenizer = build_tiny_tokenizer(alphabet())
    return save_model(build_tiny_model(tokenizer, TINY, seed=0), tokenizer, tmp_path / "input")


def _run(input_model, stage_dir, extra=()):
    cfg = load_config(None, OVERRIDES + list(extra))
    return run(cfg, StageInputs(models={"model": input_model}), stage_dir, console=Console(quiet=True))


def test_stage_trains_compares_and_saves_a_loadable_model(input_model, tmp_path):
    result = _run(input_model, tmp_path / "a")
    out = result.models["model"]
    m = result.metrics
    for key in ("val_answer_nll", "val_answer_nll_no_thinking", "test_multistep_accuracy",
                "test_multistep_accuracy_no_thinking"):
        assert key in m["quietstar"]
    assert set(m["no_thoughts"]) >= {"val_answer_nll", "test_multistep_accuracy", "train_seconds"}
    assert m["eval_items"]["test_multistep"] > 0
    json.dumps(m)  # the runner writes these as metrics.json

    # later stages load the folder with the ordinary loader; thinking needs the head file next to it
    model, tokenizer = load_model(out, device="cpu", dtype="float32")
    assert "<|startofthought|>" in tokenizer.get_vocab()
    qs = load_agent(out, device="cpu", dtype="float32")
    answers = generate_with_thoughts(qs.model, qs.tokenizer, qs.thoughts.head, ["12+34 (digits reversed)"],
                                     thought_length=qs.thoughts.thought_length, max_new_tokens=4, progress=False)
    assert len(answers[0].thoughts) >= 1
    # training moved the head off its exact-base initialisation
    assert load_file(str(out / "quietstar_head.safetensors"))["mlp.4.weight"].abs().sum() > 0


def test_stage_is_deterministic_so_a_rerun_after_a_crash_recomputes_the_same(input_model, tmp_path):
    extra = ["quietstar.compare_without_thoughts=false"]
    a = _run(input_model, tmp_path / "a", extra)
    b = _run(input_model, tmp_path / "b", extra)
    wa = load_file(str(a.models["model"] / "model.safetensors"))
    wb = load_file(str(b.models["model"] / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.metrics["quietstar"]["val_answer_nll"] == b.metrics["quietstar"]["val_answer_nll"]
    assert "no_thoughts" not in a.metrics


def test_registered_and_refuses_ambiguous_inputs(tmp_path):
    assert resolve_stage("quietstar") is run_quietstar and "quietstar" in STAGES
    cfg = load_config(None, OVERRIDES)
    with pytest.raises(ForgeError, match="needs the previous stage's 'model' model"):
        run(cfg, StageInputs(models={"base": tmp_path, "specialist_logic": tmp_path}), tmp_path / "s")
    with pytest.raises(ForgeError, match="not a file"):
        run(load_config(None, OVERRIDES + ["quietstar.text_files=[/nonexistent.txt]"]),
            StageInputs(models={"model": tmp_path}), tmp_path / "s")
