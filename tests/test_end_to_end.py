"""Drive the real console script on the packaged smoke config: run, re-run (no-op), status, eval of the result."""

import json
import os
import subprocess
import sys


def _cli(*args, cwd):
    env = dict(os.environ, AGENT_FORGE_PROGRESS="0")
    return subprocess.run(
        [sys.executable, "-m", "agent_forge.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_smoke_pipeline_end_to_end(tmp_path):
    run = _cli("run", "--config", "smoke", f"run_root={tmp_path}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    run_dir = tmp_path / "smoke"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = manifest["stages"]
    assert stages and all(entry["status"] == "done" for entry in stages.values())
    for name in stages:
        stage_dirs = list(run_dir.glob(f"*-{name}"))
        assert len(stage_dirs) == 1 and (stage_dirs[0] / "metrics.json").is_file()

    again = _cli("run", "--config", "smoke", f"run_root={tmp_path}", cwd=tmp_path)
    assert again.returncode == 0
    assert json.loads((run_dir / "manifest.json").read_text())["stages"] == stages

    status = _cli("status", str(run_dir), cwd=tmp_path)
    assert status.returncode == 0 and "seed" in status.stdout

    model = run_dir / "00-seed" / "specialist_strings"
    report = tmp_path / "eval.json"
    ev = _cli("eval", str(model), "--domains", "strings", "--levels", "1-2", "--n", "5", "--json", str(report), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "by_domain" in json.loads(report.read_text())

    thinker = run_dir / "02-quietstar" / "model"
    if thinker.is_dir():
        chat = _cli("chat", str(thinker), "--prompt", "reverse(ab)", "--show-thoughts", "--max-new-tokens", "4", cwd=tmp_path)
        assert chat.returncode == 0, chat.stderr[-2000:]
        assert "[thoughts:" in chat.stdout
