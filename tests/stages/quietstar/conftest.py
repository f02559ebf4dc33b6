"""Fixtures for the Quiet-STaR tests: a character-level tokenizer and a 2-layer Llama with thought tokens."""

from __future__ import annotations

import pytest
import torch
from quietstar_helpers import ALPHABET, TINY

from agent_forge.models import build_tiny_model, build_tiny_tokenizer
from agent_forge.models.formats.thoughts.tokens import add_thought_tokens


@pytest.fixture
def tiny_thinker():
    """(model, tokenizer, ThoughtTokens) — a fresh tiny Llama with the two delimiters added from '---'."""
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(ALPHABET)
    model = build_tiny_model(tokenizer, TINY, seed=0)
    # a freshly initialised model (std 0.02) predicts almost the same token everywhere; larger weights give
    # position-dependent predictions, so that thoughts and mixing are not trivially constant
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    tokens, _ = add_thought_tokens(model, tokenizer)
    return model, tokenizer, tokens
