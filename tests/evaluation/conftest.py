"""A tiny model trained for a few seconds on easy levels, so that evaluation has real hits and misses."""

import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer
from agent_forge.tasks import alphabet, iter_tasks
from agent_forge.training.supervised import train_supervised


@pytest.fixture(scope="session")
def trained_tiny():
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(alphabet())
    model = build_tiny_model(
        tokenizer, TinyModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=4), seed=0,
    )
    stream = iter_tasks(["arithmetic", "strings"], [1], "train", seed=0)
    train_supervised(
        model, tokenizer, lambda step: [(t.prompt, t.answer) for t in (next(stream) for _ in range(32))],
        steps=150, lr=3e-3, warmup_steps=10, progress=False,
    )
    return model, tokenizer
