"""Drive the real console script on the packaged smoke config: run, re-run (no-op), status, eval and chat of the
results; then check that `load_agent` on every stage's output reproduces what the stage reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_forge.config import load_config
from agent_forge.evaluation import evaluate
from agent_forge.models import load_agent
from agent_forge.tasks import task_grid


def _cli(*args, cwd):
    env = dict(os.environ, AGENT_FORGE_PROGRESS="0")
    return subprocess.run(
        [sys.executable, "-m", "agent_forge.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


RUN_OUTPUT: dict[str, subprocess.CompletedProcess] = {}  # the smoke run's captured output, for the noise test


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    run = _cli("run", "--config", "smoke", "threads=1", f"run_root={root}", cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    RUN_OUTPUT["run"] = run
    return root, root / "smoke"


def test_the_run_says_what_it_runs_and_stays_quiet(smoke_run):
    """First line: the config taken and the run directory; no transformers bars or warnings on the terminal."""
    _, run_dir = smoke_run
    run = RUN_OUTPUT["run"]
    from agent_forge.config import packaged_configs

    assert run.stdout.splitlines()[0] == f"config {packaged_configs()['smoke'].resolve()} -> run directory {run_dir}"
    lines = (run.stdout + "\n" + run.stderr).replace("\r", "\n").splitlines()
    noise = [line for line in lines if "Loading weights" in line or "Writing model shards" in line
             or "Warning" in line or "warnings.warn" in line or "GPU available" in line]
    assert not noise, noise[:5]
    assert "is_gradient_checkpointing" not in (run_dir / "log.txt").read_text()  # not even there: it is silenced


def _metrics(run_dir: Path, stage: str) -> dict:
    return json.loads(next(run_dir.glob(f"*-{stage}")).joinpath("metrics.json").read_text())


def test_smoke_pipeline_end_to_end(smoke_run):
    root, run_dir = smoke_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = manifest["stages"]
    assert stages and all(entry["status"] == "done" for entry in stages.values())
    for name in stages:
        stage_dirs = list(run_dir.glob(f"*-{name}"))
        assert len(stage_dirs) == 1 and (stage_dirs[0] / "metrics.json").is_file()
        trajectory = json.loads((stage_dirs[0] / "trajectory.json").read_text())
        assert trajectory["leaving"] and all(m["suite"]["n"] == 4 * 10 * 5 for m in trajectory["leaving"].values())
        assert (trajectory["entering"] is None) == (name == "seed")
    assert "done curriculum" in (run_dir / "log.txt").read_text()

    again = _cli("run", "--config", "smoke", f"run_root={root}", cwd=root)
    assert again.returncode == 0
    assert json.loads((run_dir / "manifest.json").read_text())["stages"] == stages

    status = _cli("status", str(run_dir), cwd=root)
    assert status.returncode == 0 and "seed" in status.stdout

    model = run_dir / "00-seed" / "specialist_strings"
    report = root / "eval.json"
    ev = _cli("eval", str(model), "--domains", "strings", "--levels", "1-2", "--n", "5", "--json", str(report), cwd=root)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "by_domain" in json.loads(report.read_text())

    thinker = run_dir / "02-quietstar" / "model"
    chat = _cli("chat", str(thinker), "--prompt", "reverse(ab)", "--show-thoughts", "--max-new-tokens", "4", cwd=root)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "[thoughts:" in chat.stdout


def test_the_packed_export_is_usable_wherever_a_model_is(smoke_run):
    root, run_dir = smoke_run
    packed = run_dir / "03-bitnet" / "packed"
    ev = _cli("eval", str(packed), "--domains", "arithmetic", "--levels", "1", "--n", "4", cwd=root)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "overall accuracy" in ev.stdout
    chat = _cli("chat", str(packed), "--prompt", "12+34", "--show-thoughts", "--max-new-tokens", "4", cwd=root)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "[thoughts:" in chat.stdout  # the head travelled into the packed export too


def test_load_agent_reproduces_every_stage_reported_accuracy(smoke_run):
    """What a stage measured on the model in memory, load_agent's model scores exactly, from disk."""
    _, run_dir = smoke_run
    cfg = load_config("smoke", [])
    seed = cfg.seed

    def accuracy(path, tasks, batch_size=64):
        agent = load_agent(path)
        return round(evaluate(agent.model, agent.tokenizer, tasks, batch_size=batch_size).accuracy, 2)

    from agent_forge.stages.seed.data import seed_eval_tasks

    seed_metrics = _metrics(run_dir, "seed")
    for name, report in seed_metrics["eval"].items():
        assert accuracy(run_dir / "00-seed" / name, seed_eval_tasks(cfg.seed_stage, seed)) == report["accuracy"], name

    evo = _metrics(run_dir, "evomerge")
    evo_tasks = task_grid(evo["domains"], cfg.seed_stage.eval_levels, "test", cfg.seed_stage.eval_items_per_level, seed)
    assert accuracy(run_dir / "01-evomerge" / "model", evo_tasks, cfg.evomerge.batch_size) == evo["eval"]["champion"]["accuracy"]

    from agent_forge.stages.quietstar.evaluate import accuracy_with_thoughts
    from agent_forge.stages.quietstar.stage import eval_tasks

    qc = cfg.quietstar
    quiet = _metrics(run_dir, "quietstar")
    thinker = load_agent(run_dir / "02-quietstar" / "model")
    assert thinker.thinks
    acc, _ = accuracy_with_thoughts(
        thinker.model, thinker.tokenizer, thinker.thoughts.head, eval_tasks(qc, seed)[1], stride=qc.think_stride,
        thought_temperature=qc.inference_temperature, max_new_tokens=qc.max_new_tokens,
        batch_size=qc.eval_batch_size, seed=seed, tokens=thinker.thoughts.tokens,
        thought_length=thinker.thoughts.thought_length,
    )
    reported = quiet["quietstar"]["test_multistep_accuracy"]
    assert round(acc if reported <= 1 else 100 * acc, 4 if reported <= 1 else 2) == reported

    bc = cfg.bitnet
    bit = _metrics(run_dir, "bitnet")
    bit_tasks = task_grid(bc.domains, bc.levels, "test", bc.eval_items_per_level, seed)
    ternary = load_agent(run_dir / "03-bitnet" / "model")
    assert ternary.ternary and ternary.thinks
    assert accuracy(run_dir / "03-bitnet" / "model", bit_tasks, bc.eval_batch_size) == bit["accuracy"]["warm-up + distillation"]
    assert accuracy(run_dir / "03-bitnet" / "packed", bit_tasks, bc.eval_batch_size) == bit["accuracy"]["packed inference"]

    cur = _metrics(run_dir, "curriculum")
    final = load_agent(run_dir / "04-curriculum" / "model")
    assert final.ternary and final.thinks
    for domain, levels in cur["test_after"].items():
        for level, reported in levels.items():
            tasks = task_grid([domain], [int(level)], "test", cfg.curriculum.test_items, seed)
            assert accuracy(run_dir / "04-curriculum" / "model", tasks) == reported, (domain, level)


def test_the_package_bundle_evaluates_exactly_as_the_agent_that_entered(smoke_run):
    """The deployable bundle (packed, hashed) scores the entering latent agent's suite report item for item."""
    _, run_dir = smoke_run
    cfg = load_config("smoke", [])
    pc = cfg.package
    tasks = task_grid(pc.domains, pc.levels, "test", pc.test_items_per_level, cfg.seed, world_seed=cfg.seed)
    metrics = _metrics(run_dir, "package")
    bundle_dir = run_dir / "09-package" / "agent"
    bundle, entering = load_agent(bundle_dir), load_agent(run_dir / "08-adas" / "adas_optimized_model")
    assert bundle.packed and bundle.ternary and bundle.thinks and {"experts", "tools", "design"} <= set(bundle.extensions)
    assert bundle.extensions["design"] == entering.extensions["design"]  # the ADAS design is served from the bundle
    # the memory travels in the bundle, and opening it (twice) leaves the hashed bundle intact
    assert (bundle_dir / "memory.db").is_file()
    load_agent(bundle_dir)
    a = evaluate(entering.model, entering.tokenizer, tasks, batch_size=pc.eval_batch_size)
    b = evaluate(bundle.model, bundle.tokenizer, tasks, batch_size=pc.eval_batch_size)
    if not metrics["int8_embeddings"]["applied"] or metrics["int8_embeddings"]["test_items_changed"] == 0:
        assert a.items == b.items
    assert metrics["evaluation"]["equals_entering"] == (a.items == b.items)
    assert metrics["evaluation"]["accuracy"] == round(b.accuracy, 2)
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    assert manifest["evaluation"] == metrics["evaluation"] and sum(manifest["parts"].values()) == manifest["total_bytes"]
    from agent_forge.serve.source import resolve_agent_source

    assert resolve_agent_source(str(run_dir))[0] == bundle_dir.resolve()
