"""A tiny Llama (2 layers, hidden 32) built in code, shared by the BitNet tests."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(seed: int = 0, tie: bool = False, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=48, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def make_llama():
    """Factory: ``make_llama(seed=0, tie=False, hidden=32)`` -> a fresh tiny Llama in eval mode."""
    return tiny_llama


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture
def token_ids():
    return torch.randint(0, 48, (2, 9), generator=torch.Generator().manual_seed(1))
