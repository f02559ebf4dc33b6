"""The pipeline runner with small real stages: run directory layout, manifest, re-runs, --until, failures, resume."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml
from rich.console import Console

from agent_forge.config import load_config
from agent_forge.errors import ForgeError
from agent_forge.pipeline import (
    Manifest,
    RunLock,
    is_locked,
    run_pipeline,
    run_status,
    status_table,
)
from agent_forge.stages import StageResult
from agent_forge.utils import derive_seed, is_temp_name
from pipeline_toy_stages import TOY_STAGES, failing_stage, load_toy_model, toy_config


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, color_system=None, soft_wrap=True), buffer


def _run(cfg, **kwargs):
    console, buffer = _console()
    run_dir = run_pipeline(cfg, stage_fns=kwargs.pop("stage_fns", TOY_STAGES), console=console, **kwargs)
    return run_dir, buffer.getvalue()


def _weights(run_dir, stage_dir, key):
    return (run_dir / stage_dir / key / "model.safetensors").read_bytes()


def test_fresh_run_writes_layout_manifest_and_metrics(tmp_path):
    cfg = toy_config(tmp_path, "fresh", seed=7)
    run_dir, out = _run(cfg)

    assert run_dir == (tmp_path / "fresh").resolve()
    assert sorted(p.name for p in run_dir.iterdir() if p.name != ".lock") == [
        "00-seed", "01-evomerge", "02-quietstar", "config.yaml", "log.txt", "manifest.json",
    ]
    # the run's log names every stage and its end
    log_text = (run_dir / "log.txt").read_text()
    assert all(f"done {stage}" in log_text for stage in ("seed", "evomerge", "quietstar"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config_hash"] == cfg.digest()
    assert manifest["seed"] == 7
    assert {"torch", "transformers", "agent-forge", "python"} <= set(manifest["versions"])
    assert manifest["versions"]["agent-forge"]
    assert list(manifest["stages"]) == ["seed", "evomerge", "quietstar"]
    for name, record in manifest["stages"].items():
        assert record["status"] == "done"
        assert record["attempts"] == 1
        assert record["duration_s"] >= 0
        assert record["seed"] == derive_seed(7, name)
        assert record["metrics"] == f"{record['dir']}/metrics.json"
    assert manifest["stages"]["seed"]["outputs"] == {"base": "00-seed/base", "specialist": "00-seed/specialist"}
    assert manifest["stages"]["quietstar"]["outputs"] == {"model": "02-quietstar/model"}

    # the resolved config round-trips to the same config
    assert load_config(run_dir / "config.yaml").digest() == cfg.digest()
    # metrics.json holds the returned metrics converted to plain JSON (np.float32 -> float)
    merge_metrics = json.loads((run_dir / "01-evomerge" / "metrics.json").read_text())
    merged = load_toy_model(run_dir / "01-evomerge" / "model")["w"]
    assert merge_metrics["mean"] == pytest.approx(float(merged.mean()), rel=1e-6)
    assert json.loads((run_dir / "00-seed" / "metrics.json").read_text())["summary"] == {"models": 2}
    assert not [p for p in run_dir.rglob("*") if is_temp_name(p.name)]
    assert "run complete" in out and "done seed" in out and "models=2" in out


def test_same_config_and_seed_give_identical_models(tmp_path):
    first, _ = _run(toy_config(tmp_path, "a"))
    second, _ = _run(toy_config(tmp_path, "b"))
    third, _ = _run(toy_config(tmp_path, "c", seed=1))
    for stage_dir, key in [("00-seed", "base"), ("01-evomerge", "model"), ("02-quietstar", "model")]:
        assert _weights(first, stage_dir, key) == _weights(second, stage_dir, key)
        assert _weights(first, stage_dir, key) != _weights(third, stage_dir, key)


def test_rerunning_a_finished_run_does_nothing(tmp_path):
    cfg = toy_config(tmp_path, "again")
    run_dir, _ = _run(cfg)
    manifest_before = (run_dir / "manifest.json").read_bytes()
    weights = run_dir / "01-evomerge" / "model" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    for resume in (False, True):
        _, out = _run(cfg, resume=resume)
        assert "complete; nothing to do" in out
    assert (run_dir / "manifest.json").read_bytes() == manifest_before
    assert weights.stat().st_mtime_ns == mtime


def test_until_stops_and_resume_continues(tmp_path):
    cfg = toy_config(tmp_path, "partial")
    run_dir, out = _run(cfg, until="evomerge")
    manifest = Manifest.load(run_dir)
    assert [r.status for r in manifest.stages.values()] == ["done", "done", "pending"]
    assert not (run_dir / "02-quietstar").exists()
    assert "--until" in out

    _, out = _run(cfg, until="evomerge")
    assert "complete up to stage 'evomerge'" in out
    with pytest.raises(ForgeError, match="unfinished.*--resume"):
        _run(cfg)

    _run(cfg, resume=True)
    manifest = Manifest.load(run_dir)
    assert [r.status for r in manifest.stages.values()] == ["done", "done", "done"]
    assert [r.attempts for r in manifest.stages.values()] == [1, 1, 1]
    reference, _ = _run(toy_config(tmp_path, "reference"))
    assert _weights(run_dir, "02-quietstar", "model") == _weights(reference, "02-quietstar", "model")


def test_until_and_stage_names_are_checked(tmp_path):
    cfg = toy_config(tmp_path, "names")
    with pytest.raises(ForgeError, match="unknown stage 'evomrge'"):
        _run(cfg, until="evomrge")
    with pytest.raises(ForgeError, match="'bitnet' is not one of this run's stages"):
        _run(cfg, until="bitnet")
    with pytest.raises(ForgeError, match="quietstar are not implemented"):
        _run(cfg, stage_fns={k: v for k, v in TOY_STAGES.items() if k != "quietstar"})
    assert not (tmp_path / "names").exists()  # nothing is created before the run is known to be runnable


def test_changed_config_needs_new_name_or_resume(tmp_path):
    run_dir, _ = _run(toy_config(tmp_path, "changed"), until="seed")
    changed = toy_config(tmp_path, "changed", dtype="float32")
    with pytest.raises(ForgeError, match="different config.*new name.*--resume"):
        _run(changed)
    _, out = _run(changed, resume=True)
    assert "config changed" in out
    manifest = Manifest.load(run_dir)
    assert manifest.config_hash == changed.digest()
    assert manifest.stages["seed"].attempts == 1  # finished stages are kept
    assert [h["event"] for h in manifest.history] == ["created", "config-changed", "resumed"]
    assert manifest.history[1]["previous_hash"] == toy_config(tmp_path, "changed").digest()
    assert load_config(run_dir / "config.yaml").dtype == "float32"


def test_execution_settings_do_not_make_a_finished_run_a_different_one(tmp_path):
    """threads (and where the run lives) are left out of the config hash: the finished run is found as it is."""
    run_dir, _ = _run(toy_config(tmp_path, "threads", threads=0))
    manifest = Manifest.load(run_dir).to_dict()
    _, out = _run(toy_config(tmp_path, "threads", threads=1))
    assert "nothing to do" in out
    assert Manifest.load(run_dir).to_dict()["stages"] == manifest["stages"]
    moved = tmp_path / "moved"
    run_dir.rename(tmp_path / "elsewhere")
    moved.mkdir()
    (tmp_path / "elsewhere").rename(moved / "renamed")
    _, out = _run(toy_config(moved, "renamed", threads=2))
    assert "nothing to do" in out


def test_stage_error_marks_failed_and_resume_recomputes_only_that_stage(tmp_path):
    cfg = toy_config(tmp_path, "failing")
    broken = {**TOY_STAGES, "evomerge": failing_stage}
    with pytest.raises(ForgeError) as info:
        _run(cfg, stage_fns=broken)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("stage 'evomerge' failed: the three models have different vocabularies")
    run_dir = tmp_path / "failing"
    record = Manifest.load(run_dir).stages["evomerge"]
    assert record.status == "failed" and "vocabularies" in record.error
    assert Manifest.load(run_dir).stages["quietstar"].status == "pending"
    _, rows = run_status(run_dir)
    assert [r.status for r in rows] == ["done", "failed", "pending"]

    _run(cfg, resume=True)
    manifest = Manifest.load(run_dir)
    assert [r.status for r in manifest.stages.values()] == ["done", "done", "done"]
    assert [r.attempts for r in manifest.stages.values()] == [1, 2, 1]
    assert manifest.stages["evomerge"].error is None
    assert not (run_dir / "01-evomerge" / "partial.txt").exists()


def test_keyboard_interrupt_leaves_a_resumable_run(tmp_path):
    def interrupted(ctx):
        (ctx.stage_dir / "model").mkdir()
        raise KeyboardInterrupt

    cfg = toy_config(tmp_path, "ctrl-c")
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, stage_fns={**TOY_STAGES, "quietstar": interrupted})
    record = Manifest.load(tmp_path / "ctrl-c").stages["quietstar"]
    assert (record.status, record.error) == ("failed", "interrupted")
    _run(cfg, resume=True)
    assert Manifest.load(tmp_path / "ctrl-c").stages["quietstar"].status == "done"


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_done_output_is_reported_then_recomputed_on_resume(tmp_path, damage):
    cfg = toy_config(tmp_path, f"damaged-{damage}")
    run_dir, _ = _run(cfg)
    reference = {k: _weights(run_dir, d, k) for d, k in [("01-evomerge", "model"), ("02-quietstar", "model")]}
    weights = run_dir / "01-evomerge" / "model" / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    else:
        weights.unlink()

    with pytest.raises(ForgeError, match="stage 'evomerge' is done but its output 'model'.*--resume"):
        _run(cfg)
    _, out = _run(cfg, resume=True)
    assert "recomputing from stage 'evomerge'" in out
    manifest = Manifest.load(run_dir)
    assert [r.attempts for r in manifest.stages.values()] == [1, 2, 2]
    assert {k: _weights(run_dir, d, k) for d, k in [("01-evomerge", "model"), ("02-quietstar", "model")]} == reference


def test_a_second_live_process_is_refused(tmp_path):
    cfg = toy_config(tmp_path, "locked")
    run_dir = tmp_path / "locked"
    run_dir.mkdir()
    with RunLock(run_dir):
        assert is_locked(run_dir)
        with pytest.raises(ForgeError, match="another agent-forge process"):
            _run(cfg)
    assert not is_locked(run_dir)
    _run(cfg)


def test_a_foreign_directory_is_not_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ForgeError, match="not an agent-forge run"):
        _run(toy_config(tmp_path, "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_bad_run_names_are_refused(tmp_path):
    with pytest.raises(ForgeError, match="plain directory name"):
        _run(toy_config(tmp_path, "../escape"))


def test_stage_returning_a_missing_output_fails(tmp_path):
    def forgetful(ctx):
        return StageResult(models={"model": ctx.stage_dir / "model"}, metrics={})

    with pytest.raises(RuntimeError, match="not complete"):
        _run(toy_config(tmp_path, "forgetful"), stage_fns={**TOY_STAGES, "seed": forgetful})
    assert Manifest.load(tmp_path / "forgetful").stages["seed"].status == "failed"


def test_status_table_shows_stages_durations_and_metrics(tmp_path):
    cfg = toy_config(tmp_path, "shown")
    run_dir, _ = _run(cfg, until="evomerge")
    console, buffer = _console()
    console.print(status_table(run_dir))
    text = buffer.getvalue()
    assert "00-seed" in text and "01-evomerge" in text and "02-quietstar" in text
    assert "models=2" in text and "mean=" in text and "pending" in text
    assert cfg.digest() in text

    # a stage left "running" by a killed process shows as interrupted
    manifest = Manifest.load(run_dir)
    manifest.stages["quietstar"].status = "running"
    manifest.save(run_dir)
    _, rows = run_status(run_dir)
    assert rows[-1].status == "interrupted"


def test_status_of_a_missing_run_is_a_forge_error(tmp_path):
    with pytest.raises(ForgeError, match="no agent-forge run"):
        run_status(tmp_path / "nothing")


def test_config_yaml_is_the_resolved_config(tmp_path):
    cfg = toy_config(tmp_path, "resolved", seed=3)
    run_dir, _ = _run(cfg)
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["stages"] == ["seed", "evomerge", "quietstar"]
    assert resolved == cfg.model_dump(mode="json")  # defaults are written out, not only what the user set
    assert np.isfinite(json.loads((run_dir / "02-quietstar" / "metrics.json").read_text())["delta"])
