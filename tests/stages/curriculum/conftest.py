"""A tiny Llama trained briefly on easy levels, shared by the curriculum tests (saved once per session)."""

from __future__ import annotations

import pytest
import torch

from agent_forge.config.seed import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer, save_model
from agent_forge.tasks import alphabet, iter_tasks
from agent_forge.training.supervised import train_supervised

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=256)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """(model path, model, tokenizer): a few steps on level 1 of arithmetic and logic (formats, not skill)."""
    torch.manual_seed(0)
    tok = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(tok, TINY, seed=0)
    stream = iter_tasks(["arithmetic", "logic"], [1], "train", 0)
    train_supervised(model, tok, lambda step: [(t.prompt, t.answer) for t in (next(stream) for _ in range(16))],
                     steps=60, lr=5e-3, warmup_steps=5, progress=False)
    path = tmp_path_factory.mktemp("curriculum") / "entering"
    save_model(model, tok, path)
    return path, model, tok
