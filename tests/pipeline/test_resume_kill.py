"""SIGKILL a real pipeline process at several points, resume each time, and compare with an uninterrupted run.

The toy stages write their models in place and in chunks, so the kills leave genuinely half-written model
folders behind; they also refuse (and record) any half-written input, so a resume that handed one to a stage
would fail here.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from agent_forge.pipeline import Manifest, run_pipeline
from agent_forge.utils import is_temp_name
from pipeline_toy_stages import TOY_STAGES, toy_config

SCRIPT = Path(__file__).with_name("pipeline_toy_stages.py")
REPO = Path(__file__).resolve().parents[2]


def _start(run_root: Path, name: str, events: Path, *flags: str, pause_at: str = "") -> subprocess.Popen:
    events.mkdir(parents=True)
    env = {**os.environ, "TOY_EVENTS_DIR": str(events), "TOY_PAUSE_AT": pause_at, "AGENT_FORGE_PROGRESS": "0"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(run_root), name, *flags],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _kill_at(proc: subprocess.Popen, events: Path, event: str, timeout: float = 50.0) -> None:
    """Wait until the process is parked at `event`, then SIGKILL it."""
    deadline = time.monotonic() + timeout
    while not (events / event).exists():
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {event}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {event}")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (events / "VIOLATION").exists(), (events / "VIOLATION").read_text()


def _statuses(run_dir: Path) -> list[str]:
    return [r.status for r in Manifest.load(run_dir).stages.values()]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every model and metrics file of a run, by path relative to the run directory."""
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes()
        for p in sorted(run_dir.glob("0*/**/*"))
        if p.is_file()
    }


def test_resume_after_sigkill_at_many_points_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    reference = run_pipeline(toy_config(tmp_path, "reference"), stage_fns=TOY_STAGES, console=Console(file=io.StringIO()))
    run_dir = tmp_path / "killed"
    round_ = iter(range(100))

    def attempt(event: str, *flags: str) -> None:
        events = tmp_path / f"events-{next(round_)}"
        _kill_at(_start(tmp_path, "killed", events, *flags, pause_at=event), events, event)

    # 1. mid-write of the seed stage's second model (the first is complete, the second is half-written)
    attempt("seed.specialist.chunk1")
    assert _statuses(run_dir) == ["running", "pending", "pending"]
    partial = run_dir / "00-seed" / "specialist" / "model.safetensors"
    assert 0 < partial.stat().st_size < (reference / "00-seed" / "specialist" / "model.safetensors").stat().st_size

    # 2. the seed stage wrote everything but had not returned: complete files, still not "done"
    attempt("seed.returning", "--resume")
    assert _statuses(run_dir) == ["running", "pending", "pending"]

    # 3. between stages: seed is done, evomerge has just started
    attempt("evomerge.start", "--resume")
    assert _statuses(run_dir) == ["done", "running", "pending"]

    # 4. mid-write of the merged model
    attempt("evomerge.model.chunk2", "--resume")
    assert _statuses(run_dir) == ["done", "running", "pending"]
    assert not (run_dir / "01-evomerge" / "model" / "config.json").exists()

    # 5. an uninterrupted resume (in this process: the kills above are the part that needs a real process)
    monkeypatch.setenv("TOY_EVENTS_DIR", str(tmp_path / "events-final"))
    (tmp_path / "events-final").mkdir()
    console = Console(file=io.StringIO())
    run_pipeline(toy_config(tmp_path, "killed"), resume=True, stage_fns=TOY_STAGES, console=console)
    assert not (tmp_path / "events-final" / "VIOLATION").exists()
    assert "run complete" in console.file.getvalue()

    manifest = Manifest.load(run_dir)
    assert _statuses(run_dir) == ["done", "done", "done"]
    assert [r.attempts for r in manifest.stages.values()] == [3, 3, 1]
    assert _snapshot(run_dir) == _snapshot(reference)
    assert not [p for p in run_dir.rglob("*") if is_temp_name(p.name)]
    reference_manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest.config_hash == toy_config(tmp_path, "killed").digest()
    assert {n: r.outputs for n, r in manifest.stages.items()} == {
        n: r["outputs"] for n, r in reference_manifest["stages"].items()
    }


def test_kill_during_first_manifest_write_window_starts_cleanly(tmp_path):
    """A run directory left with only config.yaml and temp files (killed before the first manifest) is reusable."""
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: early\n")
    (run_dir / "manifest.json.tmp-99999-abcd1234").write_text("{")
    run_pipeline(toy_config(tmp_path, "early"), stage_fns=TOY_STAGES)
    assert _statuses(run_dir) == ["done", "done", "done"]
    assert not (run_dir / "manifest.json.tmp-99999-abcd1234").exists()


def test_ctrl_c_in_a_real_process_marks_the_stage_and_resume_finishes(tmp_path, monkeypatch):
    events = tmp_path / "events-int"
    proc = _start(tmp_path, "interrupted", events, pause_at="evomerge.model.chunk1")
    deadline = time.monotonic() + 50
    while not (events / "evomerge.model.chunk1").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "process ended before reaching its pause"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in output
    record = Manifest.load(tmp_path / "interrupted").stages["evomerge"]
    assert (record.status, record.error) == ("failed", "interrupted")

    monkeypatch.setenv("TOY_EVENTS_DIR", str(events))
    run_pipeline(toy_config(tmp_path, "interrupted"), resume=True, stage_fns=TOY_STAGES, console=Console(file=io.StringIO()))
    assert not (events / "VIOLATION").exists()
    assert _statuses(tmp_path / "interrupted") == ["done", "done", "done"]
