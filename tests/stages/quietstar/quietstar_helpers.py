"""Helpers shared by the Quiet-STaR tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch

from agent_forge.config.seed import TinyModelConfig
from agent_forge.models.formats.thoughts.mixing import MixingHead

ALPHABET = "0123456789+-*=()?;:>, abcdefghijklmnopqrstuvwxyz\n"
TINY = TinyModelConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=256,
)


def random_head(hidden: int, seed: int = 1, scale: float = 0.3) -> MixingHead:
    """A mixing head with every layer random, so that mixing visibly changes predictions."""
    head = MixingHead(hidden)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return head


def batch_of(tokenizer, texts: list[str], padding_side: str = "right"):
    tokenizer.padding_side = padding_side
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    tokenizer.padding_side = "right"
    return enc["input_ids"], enc["attention_mask"]
