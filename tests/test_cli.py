"""The agent-forge CLI: one-line errors with exit code 2, run/status over small real stages, eval and chat.

The `run` tests register small real stages (defined below) in the stage registry, so the whole command —
config loading, run directory, manifest, status table — runs for real in a second or two.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from agent_forge.cli import app, parse_levels, parse_names
from agent_forge.inference import split_thoughts
from agent_forge.config import ForgeConfig, TinyModelConfig, TrainPhase
from agent_forge.errors import ForgeError
from agent_forge.pipeline import Manifest
from agent_forge.stages import STAGES, StageResult

runner = CliRunner()
TINY = TinyModelConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
    max_position_embeddings=128,
)


def build_and_save_tiny(path: Path) -> Path:
    from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
    from agent_forge.tasks import alphabet

    tokenizer = build_tiny_tokenizer(alphabet())
    return save_model(build_tiny_model(tokenizer, TINY, seed=0), tokenizer, path)


def cli_seed_stage(ctx):
    """A real (small) seed stage: builds and saves one tiny model."""
    build_and_save_tiny(ctx.stage_dir / "base")
    return StageResult(models={"base": ctx.stage_dir / "base"}, metrics={"summary": {"params_k": 7.5}})


def cli_failing_stage(ctx):
    raise ForgeError("seed models have different vocabularies")


def cli_interrupted_stage(ctx):
    raise KeyboardInterrupt


def _one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def _config_file(tmp_path: Path, **fields) -> Path:
    data = {"name": "cli", "run_root": str(tmp_path / "runs"), "stages": ["seed"], **fields}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    "content, fragments",
    [
        ("name: [unclosed\n", ["malformed YAML", "line"]),
        ("name: x\nbogus_key: 1\n", ["bogus_key", "Extra inputs"]),
        ("seed: twelve\n", ["seed", "integer"]),
        ("threads: -3\n", ["threads"]),
        ("- a\n- b\n", ["mapping"]),
        ("stages: [seed, sede]\n", ["sede"]),
        ("", ["is empty"]),  # not the whole default pipeline, silently
        ("name: a\nseed: 1\nname: b\n", ["duplicate key 'name'", "line 3"]),
        ("seed_stage:\n  pretrain: {steps: 0}\n", ["seed_stage.pretrain.steps", "at least 1 step"]),
    ],
)
def test_bad_config_file_is_one_line_and_exit_2(tmp_path, content, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    _one_error_line(runner.invoke(app, ["run", "--config", str(path), f"run_root={tmp_path / 'runs'}"]), *fragments)
    assert not (tmp_path / "runs").exists()


def test_binary_config_and_corrupted_manifest_are_one_line(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    _one_error_line(runner.invoke(app, ["run", "--config", str(binary)]), "not a text file")
    _one_error_line(runner.invoke(app, ["config", "show", "--config", str(binary)]), "not a text file")
    run_dir = tmp_path / "runs" / "cli"
    run_dir.mkdir(parents=True)
    for content, fragment in [("{}", "lacks name, config_hash, seed, versions"), ("[]", "found an array"),
                              ("{\"name\": ", "Expecting value")]:
        (run_dir / "manifest.json").write_text(content)
        _one_error_line(runner.invoke(app, ["status", str(run_dir)]), "corrupted", fragment)
        _one_error_line(runner.invoke(app, ["run", "--config", str(_config_file(tmp_path))]), "corrupted", fragment)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--config", "/no/such/config.yaml"], ["config file not found"]),
        (["seed_stage.pretrain.steps"], ["key.path=value"]),
        (["seed_stage.pretrain.stepz=3"], ["stepz"]),
        (["seed_stage.pretrain.steps=many"], ["steps", "integer"]),
        (["seed=1.5.3"], ["seed"]),
        (["--until", "bitnett"], ["unknown stage 'bitnett'"]),
        (["--bogus-option"], ["No such option", "--help"]),
    ],
)
def test_bad_command_line_is_one_line_and_exit_2(tmp_path, args, fragments):
    result = runner.invoke(app, ["run", *args, f"run_root={tmp_path}"])
    _one_error_line(result, *fragments)
    assert not list(tmp_path.iterdir())  # nothing was created


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agent_forge.cli", "run", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: config file not found: {tmp_path / 'missing.yaml'}"
    proc = subprocess.run([sys.executable, "-m", "agent_forge.cli", "stat"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "status" in proc.stderr


# ---------------------------------------------------------------------------------------------- run/status


def test_run_status_rerun_and_eval_of_the_result(tmp_path, monkeypatch):
    monkeypatch.setitem(STAGES, "seed", f"{__name__}:cli_seed_stage")
    config = _config_file(tmp_path)
    result = runner.invoke(app, ["run", "--config", str(config), "seed=3"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "cli"
    # the first line says which config was taken and where the run goes, as absolute paths
    assert result.stdout.splitlines()[0] == f"config {config.resolve()} -> run directory {run_dir}"
    manifest = Manifest.load(run_dir)
    assert manifest.seed == 3 and manifest.stages["seed"].status == "done"
    assert "00-seed" in result.stdout and "params_k=7.5" in result.stdout

    again = runner.invoke(app, ["run", "--config", str(config), "seed=3"])
    assert again.exit_code == 0 and "nothing to do" in again.stdout

    other = runner.invoke(app, ["run", "--config", str(config), "seed=4"])
    _one_error_line(other, "different config", "--resume")

    shown = runner.invoke(app, ["status", str(run_dir)])
    assert shown.exit_code == 0 and "done" in shown.stdout and "params_k=7.5" in shown.stdout

    report = tmp_path / "eval.json"
    model = run_dir / "00-seed" / "base"
    evaluated = runner.invoke(
        app, ["eval", str(model), "--domains", "arithmetic,strings", "--levels", "1-2", "--n", "3", "--json", str(report)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "arithmetic" in evaluated.stdout and "L2" in evaluated.stdout and "overall accuracy" in evaluated.stdout
    saved = json.loads(report.read_text())
    assert saved["n"] == 12 and saved["levels"] == [1, 2] and saved["domains"] == ["arithmetic", "strings"]
    assert set(saved["by_domain_level"]) == {"arithmetic", "strings"}
    assert 0.0 <= saved["accuracy"] <= 100.0 and np.isfinite(saved["mean_loglik"])


def test_stage_failure_is_one_line_then_resumable(tmp_path, monkeypatch):
    config = _config_file(tmp_path)
    monkeypatch.setitem(STAGES, "seed", f"{__name__}:cli_failing_stage")
    _one_error_line(runner.invoke(app, ["run", "--config", str(config)]), "stage 'seed' failed", "vocabularies")
    assert Manifest.load(tmp_path / "runs" / "cli").stages["seed"].status == "failed"

    monkeypatch.setitem(STAGES, "seed", f"{__name__}:cli_seed_stage")
    _one_error_line(runner.invoke(app, ["run", "--config", str(config)]), "unfinished", "--resume")
    resumed = runner.invoke(app, ["run", "--config", str(config), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert Manifest.load(tmp_path / "runs" / "cli").stages["seed"].attempts == 2


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch):
    config = _config_file(tmp_path)
    monkeypatch.setitem(STAGES, "seed", f"{__name__}:cli_interrupted_stage")
    result = runner.invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 130
    assert "resumable" in result.stderr and "--resume" in result.stderr and "Traceback" not in result.output


def test_unknown_stage_is_a_user_error_before_anything_runs(tmp_path):
    config = _config_file(tmp_path, stages=["seed", "serve"])
    _one_error_line(runner.invoke(app, ["run", "--config", str(config)]), "serve")
    assert not (tmp_path / "runs").exists()


def test_status_of_a_missing_run(tmp_path):
    _one_error_line(runner.invoke(app, ["status", str(tmp_path / "none")]), "no agent-forge run")


# ------------------------------------------------------------------------------------------- eval and chat


def test_eval_and_chat_input_errors(tmp_path):
    _one_error_line(runner.invoke(app, ["eval", str(tmp_path / "nope")]), "model not found")
    _one_error_line(runner.invoke(app, ["chat", str(tmp_path / "nope"), "--prompt", "hi"]), "model not found")
    folder = tmp_path / "model"
    folder.mkdir()
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--levels", "0-3"]), "levels must lie in 1-10")
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--domains", "poetry"]), "unknown domain", "poetry")
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--method", "fastest"]), "--method")
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--split", "dev"]), "--split")
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--n", "0"]), "--n")
    missing = tmp_path / "no" / "dir" / "x.json"
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--json", str(missing)]), "--json", "does not exist")
    assert not (tmp_path / "no").exists()  # nothing is created for the user
    _one_error_line(runner.invoke(app, ["eval", str(folder), "--json", str(tmp_path)]), "is a directory")


def test_corrupted_model_is_one_line(tmp_path):
    model = build_and_save_tiny(tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _one_error_line(runner.invoke(app, ["eval", str(model), "--n", "1", "--levels", "1"]), str(model))
    _one_error_line(runner.invoke(app, ["chat", str(model), "--prompt", "hi"]), str(model))


def test_chat_one_shot_and_interactive(tmp_path):
    model = build_and_save_tiny(tmp_path / "model")
    one = runner.invoke(app, ["chat", str(model), "--prompt", "2+2=?", "--max-new-tokens", "5"])
    assert one.exit_code == 0, one.output
    assert one.stdout.strip()  # the reply, or "(empty reply)" when the model ends its turn at once
    # one new token per reply, so each reply is exactly one line (a lone newline shows as "(empty reply)")
    loop = runner.invoke(app, ["chat", str(model), "--max-new-tokens", "1"], input="abc\n\nxyz\n/exit\nnever\n")
    assert loop.exit_code == 0, loop.output
    assert len(loop.stdout.strip().splitlines()) == 2  # two non-empty lines answered, then /exit


def test_thought_spans_are_split_out():
    text = "a<|startofthought|>think<|endofthought|>b<|startofthought|>unfinished"
    assert split_thoughts(text) == [("a", False), ("think", True), ("b", False), ("unfinished", True)]
    assert split_thoughts("plain") == [("plain", False)]


def test_level_and_name_parsing():
    assert parse_levels("1-3,7,2") == [1, 2, 3, 7]
    assert parse_levels("10") == [10]
    for bad in ("0", "3-1", "a", "11", ""):
        with pytest.raises(ForgeError):
            parse_levels(bad)
    assert parse_names(["a,b", "a", " c "]) == ["a", "b", "c"]


def test_override_of_one_key_keeps_the_rest_of_its_section(tmp_path, monkeypatch):
    """`seed_stage.finetune.steps=7` changes that key only; the other finetune defaults stay."""
    monkeypatch.setitem(STAGES, "seed", f"{__name__}:cli_seed_stage")
    config = _config_file(tmp_path)
    result = runner.invoke(app, ["run", "--config", str(config), "seed_stage.finetune.steps=7"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((tmp_path / "runs" / "cli" / "config.yaml").read_text())
    finetune = resolved["seed_stage"]["finetune"]
    assert finetune["steps"] == 7
    defaults = ForgeConfig().seed_stage.finetune
    assert (finetune["lr"], finetune["warmup_steps"]) == (defaults.lr, defaults.warmup_steps)
    assert defaults.lr != TrainPhase(steps=1).lr  # a fresh section would have lost the finetune defaults


def test_eval_scores_a_bitnet_checkpoint_as_the_ternary_model(tmp_path):
    """The saved latent weights only mean something through BitLinear: eval must rebuild those layers."""
    from agent_forge.evaluation import evaluate
    from agent_forge.models import load_model, save_model
    from agent_forge.models.formats.ternary import convert_to_bitlinear
    from agent_forge.tasks import task_grid

    plain = build_and_save_tiny(tmp_path / "plain")
    model, tok = load_model(str(plain))
    with torch.no_grad():  # latent weights far from ternary, so plain linears and BitLinear disagree clearly
        for p in model.parameters():
            p.mul_(3.0)
    convert_to_bitlinear(model)
    save_model(model, tok, tmp_path / "ternary")
    tasks = task_grid(("arithmetic", "logic"), (1, 2), "val", 6, 0)
    expected = evaluate(model, tok, tasks)
    result = runner.invoke(app, ["eval", str(tmp_path / "ternary"), "-d", "arithmetic,logic", "-l", "1-2", "--n", "6",
                                 "--split", "val", "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["mean_loglik"] == pytest.approx(expected.mean_loglik, abs=1e-4)
    assert got["by_domain_level"] == expected.to_dict()["by_domain_level"]


# ------------------------------------------------------------------------------- what a new user looks for


def test_no_arguments_prints_the_help_once():
    proc = subprocess.run([sys.executable, "-m", "agent_forge.cli"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Usage:") == 1 and "stages" in proc.stdout and "config" in proc.stdout


def test_stages_lists_each_stage_in_run_order_with_one_line():
    from agent_forge.registry import PLANNED_STAGES

    result = runner.invoke(app, ["stages"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[: len(STAGES)]] == list(STAGES)
    seed_line = lines[0]
    assert "Stage 0 (seed)" in seed_line  # the first line of the stage package's docstring
    assert all(name in lines[-1] for name in PLANNED_STAGES)
    assert len(lines) == len(STAGES) + (1 if PLANNED_STAGES else 0)


def test_config_show_prints_the_resolved_config_with_descriptions_and_defaults(tmp_path, monkeypatch):
    from agent_forge.config import load_config, parse_yaml

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config", "show", "--config", "smoke", "threads=1", "quietstar.text_files=[notes.txt]"])
    assert result.exit_code == 0, result.output
    expected = load_config("smoke", ["threads=1", "quietstar.text_files=[notes.txt]"])
    first, *rest = result.stdout.splitlines()
    assert first.startswith("# config ") and first.endswith(f"config hash {expected.digest()}")
    assert parse_yaml(result.stdout) == expected.model_dump(mode="json")
    assert any(line.startswith("threads: 1  # torch CPU threads") and "(default: 0)" in line for line in rest)
    assert any(str(tmp_path / "notes.txt") in line for line in rest)  # a relative path, recorded absolute
    default = runner.invoke(app, ["config", "show"])  # without --config: the config `run` takes (tiny)
    assert default.exit_code == 0 and "tiny.yaml" in default.stdout.splitlines()[0]
    _one_error_line(runner.invoke(app, ["config", "show", "seed_stage.pretrain.steps=0"]), "at least 1 step")


def cli_summary_stage(ctx):
    """A stage whose headline has a percentage, a fraction and a missing value."""
    build_and_save_tiny(ctx.stage_dir / "model")
    summary = {"accuracy": 45.5, "retained": 0.9123, "mastered_change": None, "nll": 1.25}
    return StageResult(models={"model": ctx.stage_dir / "model"}, metrics={"summary": summary})


def test_status_shows_percentages_no_none_model_paths_and_time_so_far(tmp_path, monkeypatch):
    from datetime import datetime, timedelta, timezone

    from agent_forge.pipeline import RunLock

    monkeypatch.setitem(STAGES, "seed", f"{__name__}:cli_summary_stage")
    config = _config_file(tmp_path, stages=["seed", "evomerge"])
    result = runner.invoke(app, ["run", "--config", str(config), "--until", "seed"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "cli"
    manifest = Manifest.load(run_dir)
    manifest.stages["evomerge"].status = "running"
    manifest.stages["evomerge"].started_at = (datetime.now(timezone.utc) - timedelta(minutes=3, seconds=7)).isoformat()
    manifest.save(run_dir)
    with RunLock(run_dir):  # a live process holds the run: the stage is running, not interrupted
        shown = runner.invoke(app, ["status", str(run_dir)])
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "None" not in text
    assert "accuracy=45.5%" in text and "retained=91.23%" in text and "mastered_change=-" in text
    assert "nll=1.25" in text and "nll=1.25%" not in text
    assert "running" in text and "3m0" in text and "so far" in text, text
    assert "00-seed/model" in text and str(run_dir) in text  # model paths, relative to the run shown in the title


def test_chat_shows_one_example_prompt_per_domain_on_start(tmp_path, monkeypatch):
    import agent_forge.cli as cli
    from agent_forge.cli import model_commands
    from agent_forge.tasks import DOMAINS

    model = build_and_save_tiny(tmp_path / "model")
    monkeypatch.setattr(model_commands, "_stdin_is_terminal", lambda: True)
    result = runner.invoke(app, ["chat", str(model), "--max-new-tokens", "1"], input="/exit\n")
    assert result.exit_code == 0, result.output
    examples = cli.example_prompts()
    assert set(examples) == set(DOMAINS)
    for domain, prompt in examples.items():
        assert any(line.split() and line.split()[0] == domain and prompt in line for line in result.stdout.splitlines())
