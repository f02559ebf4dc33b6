"""Shared fixtures: a character-level tokenizer and a tiny Llama (2 layers, hidden 32) any test may build on.

`tiny_tokenizer` and `tiny_config` are session-wide (read-only; `copy.deepcopy` the tokenizer before adding tokens);
`tiny_model` is a fresh model per test, so tests may train or modify it.
"""

import os

import pytest
import torch

from agent_forge.config import TinyModelConfig
from agent_forge.models import build_tiny_model, build_tiny_tokenizer

# Tests use tiny models, whose ops are too small to gain from several threads; on a shared, busy machine extra
# threads only contend (a 150-step tiny training loop measured 8 s with one thread, 167 s with two, at load 13).
torch.set_num_threads(int(os.environ.get("AGENT_FORGE_TEST_THREADS", "1")))

# every character the fixtures' prompts and answers use
TINY_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz+-*=?:,.;()[]<>|_ \n"

TINY_CONFIG = TinyModelConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=128,
)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that runs the pipeline in-process sets torch's thread count from its config (`threads: 2`); the
    tests after it keep the suite's own (a tiny training loop's float order, and so its numbers, follow it)."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer(TINY_ALPHABET)


@pytest.fixture(scope="session")
def tiny_config() -> TinyModelConfig:
    return TINY_CONFIG


@pytest.fixture
def tiny_model(tiny_tokenizer):
    torch.manual_seed(0)
    return build_tiny_model(tiny_tokenizer, TINY_CONFIG, seed=0)


@pytest.fixture(scope="session")
def train_copier(tiny_tokenizer, tiny_config):
    """`train_copier(steps)`: a fresh tiny model trained for a moment to copy short strings (varied outputs of
    varied lengths, ending on eos), for generation and batching tests."""
    import random

    from agent_forge.models import encode_pairs

    def train(steps: int):
        torch.manual_seed(0)
        model = build_tiny_model(tiny_tokenizer, tiny_config, seed=0)
        rng = random.Random(0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 5))) for _ in range(32)]
            batch = encode_pairs(tiny_tokenizer, words, words)
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval()

    return train
