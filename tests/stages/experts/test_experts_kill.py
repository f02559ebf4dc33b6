"""The experts stage killed with SIGKILL after its first expert resumes to the uninterrupted result.

Each run is its own process (`experts_child.py`): one uninterrupted, one killed as soon as the scratch
`state.json` names a finished expert, then the same command again, which must resume. The resumed run's
metrics (less its timing and `resumed` flag) and every file of its agent are byte-identical to the
uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_forge.config.seed import TinyModelConfig
from agent_forge.models import Agent, build_tiny_model, build_tiny_tokenizer, save_agent
from agent_forge.models.formats.ternary import convert_to_bitlinear
from agent_forge.tasks import alphabet

CHILD = Path(__file__).with_name("experts_child.py")
# the model and settings of test_experts_stage.py; three steps per expert, so that the second expert and the
# report take long enough to be killed in between
TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)
CONFIG = {"domains": ["arithmetic", "strings"], "levels": [1], "steps": 3, "prompts_per_step": 2,
          "samples_per_prompt": 2, "max_new_tokens": 6, "val_every": 1, "val_items": 4, "test_items": 4,
          "router_items": 8}
VOLATILE = {"seconds", "resumed"}


def _child(entering: Path, stage_dir: Path, metrics: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(CHILD), str(entering), str(stage_dir), str(metrics), json.dumps(CONFIG)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_sigkill_after_the_first_expert_resumes_to_the_uninterrupted_result(tmp_path):
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    convert_to_bitlinear(model, sub_norm=True)
    entering = tmp_path / "entering"
    save_agent(Agent(model, tok), entering)

    whole_dir, whole_metrics = tmp_path / "a" / "05-experts", tmp_path / "a.json"
    _finish(_child(entering, whole_dir, whole_metrics))

    killed_dir, killed_metrics = tmp_path / "b" / "05-experts", tmp_path / "b.json"
    state_file = killed_dir.parent / ".resume" / killed_dir.name / "state.json"
    proc = _child(entering, killed_dir, killed_metrics)
    deadline = time.time() + 300  # a cold interpreter imports torch and transformers first
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(state_file.read_text())["done"]:
                    break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass  # not written yet (the write is atomic, but the file may not exist)
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_state = json.loads(state_file.read_text())
    assert killed_state["done"] == ["weights/arithmetic"] and not killed_metrics.exists()
    assert not (killed_dir / "model").exists()

    _finish(_child(entering, killed_dir, killed_metrics))
    whole, resumed = json.loads(whole_metrics.read_text()), json.loads(killed_metrics.read_text())
    assert resumed["resumed"] and not whole["resumed"]
    assert {k: v for k, v in resumed.items() if k not in VOLATILE} == {k: v for k, v in whole.items() if k not in VOLATILE}
    a, b = _files(whole_dir / "model"), _files(killed_dir / "model")
    assert sorted(a) == sorted(b) and any(name.startswith("experts/expert-") for name in a)
    assert [name for name in a if a[name] != b[name]] == []
    assert not state_file.parent.exists()  # the scratch state is removed once the stage is done
