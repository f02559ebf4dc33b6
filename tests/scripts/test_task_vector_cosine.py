"""scripts/task_vector_cosine.py on hand-made task vectors and on a saved seed stage of tiny models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
from agent_forge.tasks import alphabet

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "task_vector_cosine.py"
spec = importlib.util.spec_from_file_location("task_vector_cosine", SCRIPT)
tvc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tvc)


def test_cosine_of_known_vectors():
    a = {"layers.0.mlp.up_proj.weight": torch.tensor([1.0, 0.0]), "layers.0.self_attn.q_proj.weight": torch.tensor([1.0])}
    b = {"layers.0.mlp.up_proj.weight": torch.tensor([0.0, 2.0]), "layers.0.self_attn.q_proj.weight": torch.tensor([-3.0])}
    assert tvc.cosine(a, b, r"\.mlp\.") == pytest.approx(0.0)
    assert tvc.cosine(a, b, r"self_attn\.") == pytest.approx(-1.0)
    assert tvc.cosine(a, b) == pytest.approx(-3.0 / (2 ** 0.5 * 13 ** 0.5))
    assert tvc.cosine(a, {k: torch.zeros_like(v) for k, v in a.items()}) is None  # untrained: no direction


def test_script_reads_a_seed_stage(tmp_path, capsys):
    cfg = TinyModelConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                          num_key_value_heads=2, max_position_embeddings=64)
    tok = build_tiny_tokenizer(alphabet())
    seed = tmp_path / "run" / "00-seed"
    base = build_tiny_model(tok, cfg, seed=0)
    save_model(base, tok, seed / "base")
    for name, sign in (("arithmetic", 1.0), ("logic", -1.0)):
        model = build_tiny_model(tok, cfg, seed=0)
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.add_(sign)  # opposite task vectors on one matrix
        save_model(model, tok, seed / f"specialist_{name}")
    assert tvc.main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "| run | arithmetic·logic | -1.000 | untrained | -1.000 | untrained | untrained |" in out
    assert tvc.main([str(tmp_path)]) == 2 and "error:" in capsys.readouterr().err
