"""The BitNet stage end to end on a tiny model: outputs, metrics, reload through the loader, determinism."""

import json

import pytest
import torch

from agent_forge.config import TinyModelConfig, load_config
from agent_forge.errors import ForgeError
from agent_forge.models import (
    build_tiny_model,
    build_tiny_tokenizer,
    load_agent,
    load_model,
    save_agent,
    save_model,
    with_thoughts,
)
from agent_forge.models.formats.thoughts import (
    END_OF_THOUGHT,
    START_OF_THOUGHT,
    HeadInfo,
    MixingHead,
    add_thought_tokens,
)
from agent_forge.stages import StageInputs
from agent_forge.models.formats.ternary import is_ternary
from agent_forge.stages import StageContext
from agent_forge.stages.bitnet import run as run_bitnet
from agent_forge.tasks import alphabet


def run(cfg, inputs, stage_dir, console=None):
    """Run the bitnet stage on its own, with the context the pipeline runner would give it."""
    return run_bitnet(StageContext.create("bitnet", cfg, inputs, stage_dir, console=console))

SHAPE = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, max_position_embeddings=128)
QUICK = [
    "bitnet.train.steps=6", "bitnet.train.batch_size=4", "bitnet.train.warmup_steps=1", "bitnet.domains=[arithmetic]",
    "bitnet.levels=[1]", "bitnet.eval_items_per_level=6", "bitnet.eval_batch_size=6",
]


@pytest.fixture(scope="module")
def input_model(tmp_path_factory):
    tokenizer = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tokenizer, SHAPE, seed=0)
    folder = tmp_path_factory.mktemp("seed") / "model"
    save_model(model, tokenizer, folder)
    return folder


def _run(folder, stage_dir, *overrides):
    cfg = load_config(None, [*QUICK, "device=cpu", *overrides])
    return run(cfg, StageInputs(models={"model": folder}), stage_dir)


def _thinking_input(input_model, folder):
    """The input model with thought tokens and a (non-trivial) mixing head, as the quietstar stage leaves it."""
    agent = load_agent(input_model)
    tokens, _ = add_thought_tokens(agent.model, agent.tokenizer)
    head = MixingHead(agent.model.config.hidden_size)
    with torch.no_grad():
        head.output.weight.fill_(0.01)
    save_agent(with_thoughts(agent, head, tokens, HeadInfo(2, START_OF_THOUGHT, END_OF_THOUGHT)), folder)
    return folder


def test_stage_outputs_a_loadable_ternary_model_and_a_packed_export(input_model, tmp_path):
    source = _thinking_input(input_model, tmp_path / "input")
    head_bytes = (source / "quietstar_head.safetensors").read_bytes()
    result = _run(source, tmp_path / "stage")
    assert set(result.models) == {"model", "packed"}
    m = result.metrics
    assert set(m["accuracy"]) == {"full precision", "naive ternary", "warm-up + distillation", "packed inference"}
    assert m["size"]["bits_per_weight"] <= 2.05
    assert set(m["summary"]) == {"accuracy", "fp_accuracy", "retained", "bits_per_weight", "kernel"}
    assert m["summary"]["kernel"] == ("C" if m["kernel"].startswith("C kernel") else "torch fallback")
    assert m["size"]["model_shrink_ratio"] > 1
    assert m["train"]["lambda_reaches_one_at_step"] == 2  # 30% of 6 steps
    assert m["packed_max_logit_gap"] < 1e-3
    assert m["ternary"]["layers"] == 14
    json.dumps(m)  # metrics must be JSON-serialisable as they are
    # the extensions of the entering agent travel on, explicitly (the head file is written again, unchanged)
    assert m["extensions"] == ["thoughts"]
    assert (result.models["model"] / "quietstar_head.safetensors").read_bytes() == head_bytes
    assert (result.models["packed"] / "quietstar_head.safetensors").read_bytes() == head_bytes

    # what every later stage does with the output: one call, and it is ternary and thinks
    agent = load_agent(result.models["model"], device="cpu")
    model, tok = agent.model, agent.tokenizer
    assert is_ternary(model) and agent.ternary and agent.thinks
    packed_agent = load_agent(result.models["packed"])
    assert packed_agent.packed and packed_agent.ternary and packed_agent.thinks
    packed = packed_agent.model
    # plain transformers still reads the latent folder (as an ordinary, non-ternary model)
    plain, _ = load_model(result.models["model"], device="cpu")
    assert not is_ternary(plain)
    batch = tok(["12+34=\n", "abc"], return_tensors="pt", padding=True)
    with torch.no_grad():
        latent_logits = model(**batch).logits
        packed_logits = packed(**batch).logits
    assert torch.allclose(latent_logits, packed_logits, atol=1e-3)


def test_stage_is_deterministic_so_a_resumed_run_recomputes_the_same_model(input_model, tmp_path):
    first = _run(input_model, tmp_path / "a", "bitnet.evaluate_naive=false", "bitnet.export_packed=false")
    second = _run(input_model, tmp_path / "b", "bitnet.evaluate_naive=false", "bitnet.export_packed=false")
    a, _ = load_model(first.models["model"], device="cpu")
    b, _ = load_model(second.models["model"], device="cpu")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert first.metrics["accuracy"] == second.metrics["accuracy"]


def test_stage_errors_are_one_line_forge_errors(input_model, tmp_path):
    cfg = load_config(None, QUICK)
    with pytest.raises(ForgeError, match="needs the previous stage's 'model' model, but it produced"):
        run(cfg, StageInputs(models={"specialist_logic": input_model, "base": input_model}), tmp_path / "x")
    ternary = _run(input_model, tmp_path / "t", "bitnet.evaluate_naive=false", "bitnet.export_packed=false")
    with pytest.raises(ForgeError, match="already a BitNet"):
        run(cfg, StageInputs(models={"model": ternary.models["model"]}), tmp_path / "y")


@pytest.mark.slow
def test_conversion_with_distillation_keeps_nine_tenths_of_a_trained_models_accuracy(tmp_path):
    from agent_forge.tasks import iter_tasks
    from agent_forge.training.supervised import train_supervised

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(alphabet())
    shape = TinyModelConfig(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=4, max_position_embeddings=128)
    model = build_tiny_model(tokenizer, shape, seed=0)
    stream = iter_tasks(["strings", "logic"], [1, 2], "train", 0)
    train_supervised(model, tokenizer, lambda step: [(t.prompt, t.answer) for t in (next(stream) for _ in range(32))],
                     steps=500, lr=2e-3, warmup_steps=20, progress=False)
    save_model(model, tokenizer, tmp_path / "fp")
    cfg = load_config(None, ["device=cpu", "bitnet.domains=[strings, logic]", "bitnet.levels=[1, 2]",
                             "bitnet.train.steps=300"])
    result = run(cfg, StageInputs(models={"model": tmp_path / "fp"}), tmp_path / "stage")
    acc = result.metrics["accuracy"]
    assert acc["full precision"] > 30  # the teacher learned something worth keeping
    assert acc["naive ternary"] < acc["full precision"]
    assert acc["warm-up + distillation"] >= 0.9 * acc["full precision"]
    assert acc["packed inference"] == pytest.approx(acc["warm-up + distillation"], abs=2)
