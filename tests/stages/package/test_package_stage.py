"""The package stage: one deployable bundle (packed 2-bit linears + every extension) that load_agent loads,
hashed in bundle.json, evaluated equal to the entering agent, with the int8 embedding pass measured (and, when
applied, stored as int8 rows that load_agent restores to exactly the in-memory int8 model)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent_forge.config import load_config
from agent_forge.errors import ForgeError
from agent_forge.evaluation import evaluate
from agent_forge.models import Agent, load_agent, save_agent, with_thoughts
from agent_forge.models.formats.bundle import MANIFEST, ROW_SCALE, part_sizes, sha256_file
from agent_forge.models.formats.experts import ExpertSet, Router, decompose_model, prompt_features, target_names
from agent_forge.models.formats.ternary import PackedBitLinear, convert_to_bitlinear
from agent_forge.models.formats.ternary.packed import read_safetensors_header
from agent_forge.models.formats.thoughts import END_OF_THOUGHT, START_OF_THOUGHT, HeadInfo, MixingHead, add_thought_tokens
from agent_forge.stage_contract import StageContext, StageInputs
from agent_forge.stages.package import run
from agent_forge.stages.package.stage import int8_in_memory, suite

SMALL = ["threads=1", "package.domains=[arithmetic, strings]", "package.levels=[1, 2]",
         "package.val_items_per_level=3", "package.test_items_per_level=3", "package.eval_batch_size=16"]


def _thinking_ternary_agent_with_experts(model, tokenizer) -> Agent:
    tok = copy.deepcopy(tokenizer)
    tokens, _ = add_thought_tokens(model, tok)
    convert_to_bitlinear(model)
    head = MixingHead(model.config.hidden_size)
    with torch.no_grad():
        head.output.weight.normal_()
    names = target_names(model)
    dec = decompose_model(model, names)
    z = {n: torch.full_like(d.S, 0.3) for n, d in dec.items()}
    prompts = ["12+3=?", "abc reversed?"]
    router = Router.fit(prompt_features(model, tok, prompts), [0, 1], ["a", "b"])
    agent = Agent(model, tok, extensions={"experts": ExpertSet(names, dec, {"a": z, "b": z}, 1.0, router, 0.3)})
    return with_thoughts(agent, head, tokens, HeadInfo(2, START_OF_THOUGHT, END_OF_THOUGHT))


def _run_stage(source: Path, stage_dir: Path, *overrides: str):
    cfg = load_config(None, [*SMALL, *overrides])
    ctx = StageContext.create("package", cfg, StageInputs(models={"model": source}), stage_dir)
    return cfg, run(ctx)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, tiny_tokenizer, tiny_config):
    from agent_forge.models import build_tiny_model

    root = tmp_path_factory.mktemp("package")
    tok = copy.deepcopy(tiny_tokenizer)
    torch.manual_seed(0)
    model = build_tiny_model(tok, tiny_config, seed=0)
    save_agent(_thinking_ternary_agent_with_experts(model, tok), root / "in")
    cfg, result = _run_stage(root / "in", root / "09-package")
    return root, cfg, result


def test_the_bundle_is_packed_ternary_and_keeps_every_extension(packaged):
    root, _, result = packaged
    assert set(result.models) == {"agent"}
    # packed layers cannot take the expert vectors as they are: the stage declares the rank-r approximation
    assert "expert vectors need the latent weights" in result.trade_off and "rank-r correction" in result.trade_off
    bundle = load_agent(result.models["agent"])
    assert bundle.packed and bundle.ternary and bundle.thinks
    assert any(isinstance(m, PackedBitLinear) for m in bundle.model.modules())
    assert sorted(bundle.extensions) == ["experts", "thoughts"]
    assert sorted(bundle.extensions["experts"].experts) == ["a", "b"]
    entering = load_agent(root / "in")
    for a, b in zip(entering.thoughts.head.state_dict().values(), bundle.thoughts.head.state_dict().values()):
        assert torch.equal(a, b)


def test_bundle_json_hashes_and_sizes_match_the_files(packaged):
    _, cfg, result = packaged
    folder = result.models["agent"]
    manifest = json.loads((folder / MANIFEST).read_text())
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(manifest["files"]) == files
    for rel, entry in manifest["files"].items():
        assert entry == {"sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}
    parts = manifest["parts"]
    assert parts == part_sizes(folder) and sum(parts.values()) == manifest["total_bytes"]
    assert all(parts[k] > 0 for k in ("packed_linears", "full_precision", "thought_head", "experts", "tokenizer"))
    assert manifest["extensions"] == ["experts", "thoughts"] and manifest["packed"] and manifest["ternary"]
    assert manifest["source"]["config_digest"] == cfg.digest()
    assert result.metrics["parts"] == parts


def test_the_bundle_evaluation_equals_the_entering_agent_item_for_item(packaged):
    root, cfg, result = packaged
    tasks = suite(cfg.package, "test", cfg.package.test_items_per_level, cfg.seed)
    entering = load_agent(root / "in")
    bundle = load_agent(result.models["agent"])
    a = evaluate(entering.model, entering.tokenizer, tasks, batch_size=16)
    b = evaluate(bundle.model, bundle.tokenizer, tasks, batch_size=16)
    assert a.items == b.items and len(a.items) == 2 * 2 * 3
    ev = result.metrics["evaluation"]
    assert ev["equals_entering"] and ev["accuracy"] == round(b.accuracy, 2) and ev["n"] == len(tasks)
    int8 = result.metrics["int8_embeddings"]
    assert int8["mode"] == "auto" and "val_accuracy" in int8 and int8["decision"]
    assert int8["applied"] == (int8["val_items_changed"] == 0)


def test_a_corrupted_file_is_one_line_error_on_load_and_in_the_cli(packaged, tmp_path):
    import shutil

    _, _, result = packaged
    copy_ = tmp_path / "agent"
    shutil.copytree(result.models["agent"], copy_)
    head = copy_ / "quietstar_head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    head.write_bytes(bytes(data))
    with pytest.raises(ForgeError, match="quietstar_head.safetensors does not match its sha256") as err:
        load_agent(copy_)
    assert "\n" not in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "agent_forge.cli", "eval", str(copy_), "--domains", "arithmetic",
                           "--levels", "1", "--n", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "does not match its sha256" in lines[0], lines
    (copy_ / "extra.txt").write_text("x")
    head.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(ForgeError, match="extra.txt is not listed"):
        load_agent(copy_)


def test_int8_rows_are_a_stored_format_that_reproduces_the_in_memory_int8_model(packaged, tmp_path):
    root, _, _ = packaged
    _, result = _run_stage(root / "in", tmp_path / "09-package", "package.int8_embeddings=always")
    folder = result.models["agent"]
    int8 = result.metrics["int8_embeddings"]
    assert int8["applied"] and int8["tensors"] == ["model.embed_tokens.weight"]  # tied: embeddings are the head
    header = read_safetensors_header(folder / "model.safetensors")
    assert header["model.embed_tokens.weight"]["dtype"] == "I8"
    assert header["model.embed_tokens.weight" + ROW_SCALE]["dtype"] == "F32"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["parts"]["int8_embeddings"] > 0 and manifest["int8_embeddings"]["applied"]

    stored = load_agent(folder)
    reference = load_agent(root / "09-package" / "agent")  # the fp32-embedding bundle, int8 applied in memory
    int8_in_memory(reference.model)
    batch = stored.tokenizer(["12+34=", "reverse(abc)"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(stored.model(**batch).logits, reference.model(**batch).logits)
    assert stored.thinks and sorted(stored.extensions) == ["experts", "thoughts"]


def test_a_full_precision_agent_is_bundled_as_its_hf_folder(tiny_model, tiny_tokenizer, tmp_path):
    save_agent(Agent(tiny_model, copy.deepcopy(tiny_tokenizer)), tmp_path / "in")
    _, result = _run_stage(tmp_path / "in", tmp_path / "09-package")
    bundle = load_agent(result.models["agent"])
    assert not bundle.packed and not bundle.ternary
    int8 = result.metrics["int8_embeddings"]
    assert not int8["applied"] and "not packed" in int8["decision"]
    assert result.metrics["evaluation"]["equals_entering"]
    assert result.metrics["parts"]["packed_linears"] == 0 and result.metrics["parts"]["full_precision"] > 0
    assert result.trade_off is None  # nothing given up: the bundle is the agent as it was


def test_a_packed_input_is_refused_in_one_line(packaged, tmp_path):
    root, _, _ = packaged
    with pytest.raises(ForgeError, match="already a packed export"):
        _run_stage(root / "09-package" / "agent", tmp_path / "09-package")


def test_serve_prefers_the_bundle_of_a_finished_package_stage(packaged, tmp_path):
    from agent_forge.serve.source import resolve_agent_source

    root, _, _ = packaged
    manifest = {"name": "r", "stages": {
        "experts": {"status": "done", "outputs": {"model": str(root / "in")}},
        "package": {"status": "done", "outputs": {"agent": "09-package/agent"}},
    }}
    run_dir = root
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    try:
        path, name = resolve_agent_source(str(run_dir))
        assert path == run_dir.resolve() / "09-package" / "agent" and name == "r"
        manifest["stages"]["package"]["status"] = "running"
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        assert resolve_agent_source(str(run_dir))[0] == root / "in"
    finally:
        (run_dir / "manifest.json").unlink()


def test_the_report_has_a_package_table(packaged):
    from agent_forge.pipeline.report_stages import package_table

    _, _, result = packaged
    columns, rows, note = package_table(json.loads(json.dumps(result.metrics)))
    assert columns == ["part", "bytes", "share (%)"]
    names = [r[0] for r in rows]
    assert names[0] == "packed_linears" and "full_precision" in names and rows[-1][2] == "100.0"
    assert "item for item: True" in note and "int8 embeddings" in note
