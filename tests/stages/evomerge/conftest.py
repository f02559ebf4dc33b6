"""Tiny Llama fixtures for the EvoMerge tests: a shared base and three 'specialists' that differ from it slightly."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama_config(layers: int = 2, hidden: int = 32, vocab: int = 40) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                       tie_word_embeddings=False)


def perturbed(model: LlamaForCausalLM, scale: float, seed: int) -> LlamaForCausalLM:
    """A copy of `model` with small Gaussian changes, standing in for a fine-tune of it."""
    gen = torch.Generator().manual_seed(seed)
    clone = LlamaForCausalLM(model.config)
    clone.load_state_dict({k: v + scale * torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()})
    return clone.eval()


@pytest.fixture
def tiny_family():
    """(base, [three specialists]) as LlamaForCausalLM, 2 layers, hidden 32."""
    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config()).eval()
    return base, [perturbed(base, 0.02, seed) for seed in (1, 2, 3)]
