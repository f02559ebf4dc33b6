"""A single greedy prompt on a packed model decodes in the whole-step C decoder, with the batched path's tokens."""

from __future__ import annotations

import random

import pytest
import torch

from agent_forge.models import encode_pairs, generate
from agent_forge.models.formats.ternary import convert_to_bitlinear, decoder_for, export_packed, load_packed
from agent_forge.models.formats.ternary.kernel import kernel_library

pytestmark = pytest.mark.skipif(kernel_library() is None, reason="no C compiler: the decoder is unavailable")


def _prompts(n: int) -> list[str]:
    rng = random.Random(7)
    return ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 5))) for _ in range(n)]


@pytest.fixture(scope="module")
def packed_copier(tmp_path_factory, tiny_tokenizer, tiny_config):
    """A ternary tiny model trained briefly to copy words (decisive logits), exported packed and loaded back."""
    from agent_forge.models import build_tiny_model

    torch.manual_seed(0)
    model = build_tiny_model(tiny_tokenizer, tiny_config, seed=0)
    convert_to_bitlinear(model)
    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(120):
        words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 5))) for _ in range(32)]
        batch = encode_pairs(tiny_tokenizer, words, words)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("packed") / "copier"
    export_packed(model.eval(), tiny_tokenizer, folder)
    return load_packed(folder)


def _batched(model, tokenizer, prompts, **kw):
    # a second, longer prompt makes it a batch of two: the layer-by-layer path, left-padded
    return [generate(model, tokenizer, [p, "abcdefgh"], max_new_tokens=12, progress=False, **kw)[0] for p in prompts]


def test_single_greedy_prompt_uses_the_decoder_and_matches_the_batched_path(packed_copier):
    model, tokenizer = packed_copier
    assert decoder_for(model) is not None and decoder_for(model) is decoder_for(model)  # built once, cached
    prompts = _prompts(24)
    single = [generate(model, tokenizer, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert single == _batched(model, tokenizer, prompts)
    # stop strings cut the decoder's output as they cut the batched path's
    assert [generate(model, tokenizer, [p], max_new_tokens=12, stop=["c"], progress=False)[0] for p in prompts] \
        == _batched(model, tokenizer, prompts, stop=["c"])


def test_suppressed_tokens_never_appear_and_a_hooked_model_falls_back(packed_copier):
    model, tokenizer = packed_copier
    prompts = _prompts(12)
    first = generate(model, tokenizer, [prompts[0]], max_new_tokens=12, progress=False)[0]
    banned = tokenizer.convert_tokens_to_ids(first[0])
    model.generation_config.suppress_tokens = [banned]
    try:
        single = [generate(model, tokenizer, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
        assert single == _batched(model, tokenizer, prompts)
        assert all(first[0] not in text for text in single)
    finally:
        model.generation_config.suppress_tokens = None
    # a forward hook (an expert applied for one answer) is something the C step would skip: no decoder then
    handle = model.model.layers[0].mlp.register_forward_hook(lambda module, args, out: out * 0.5)
    try:
        assert decoder_for(model) is None
        hooked = [generate(model, tokenizer, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
        assert hooked == _batched(model, tokenizer, prompts)
    finally:
        handle.remove()
    assert decoder_for(model) is not None


def test_models_that_are_not_packed_keep_the_batched_path(tiny_model, tiny_tokenizer):
    assert decoder_for(tiny_model) is None
    assert generate(tiny_model, tiny_tokenizer, ["abc"], max_new_tokens=6, progress=False) \
        == [generate(tiny_model, tiny_tokenizer, ["abc", "abcdefgh"], max_new_tokens=6, progress=False)[0]]
