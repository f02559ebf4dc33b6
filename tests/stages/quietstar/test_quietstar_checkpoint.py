"""Storage: an ordinary HF folder any loader reads, plus the mixing head file; bad head files are ForgeErrors."""

from __future__ import annotations

import pytest
import torch
from quietstar_helpers import random_head
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from agent_forge.errors import ForgeError
from agent_forge.models import load_model
from agent_forge.stages.quietstar import (
    HEAD_FILE,
    copy_head,
    generate_with_thoughts,
    has_head,
    load_quietstar,
    save_quietstar,
)
from agent_forge.stages.quietstar.checkpoint import HeadInfo, load_head

PROMPTS = ["12+34", "max 9 1 4"]


def test_round_trip_keeps_tokens_head_and_thinking(tiny_thinker, tmp_path):
    model, tokenizer, tokens = tiny_thinker
    head = random_head(model.config.hidden_size)
    before = generate_with_thoughts(model, tokenizer, head, PROMPTS, thought_length=3, max_new_tokens=5, progress=False)
    folder = save_quietstar(model, tokenizer, head, HeadInfo(3, "<|startofthought|>", "<|endofthought|>"), tmp_path / "m")
    assert has_head(folder) and (folder / "config.json").is_file()

    loaded = load_quietstar(folder, device="cpu", dtype="float32")
    assert loaded.tokens == tokens and loaded.thought_length == 3
    for a, b in zip(head.state_dict().values(), loaded.head.state_dict().values()):
        assert torch.equal(a, b)
    after = generate_with_thoughts(
        loaded.model, loaded.tokenizer, loaded.head, PROMPTS, thought_length=loaded.thought_length,
        max_new_tokens=5, progress=False,
    )
    assert after == before

    # later stages: our loader and plain transformers both read the folder and keep the thought tokens
    plain, plain_tok = load_model(folder, device="cpu", dtype="float32")
    assert plain_tok.convert_tokens_to_ids("<|endofthought|>") == tokens.end_id
    # and plain `model.generate` is told to keep the delimiters out of ordinary text
    assert GenerationConfig.from_pretrained(folder).suppress_tokens == list(tokens.ids)
    auto = AutoModelForCausalLM.from_pretrained(folder)
    assert auto.get_input_embeddings().weight.shape[0] == len(AutoTokenizer.from_pretrained(folder))
    torch.testing.assert_close(
        auto.get_input_embeddings().weight[list(tokens.ids)], model.get_input_embeddings().weight[list(tokens.ids)]
    )


def test_missing_or_corrupted_head_is_a_forge_error(tiny_thinker, tmp_path):
    model, tokenizer, _ = tiny_thinker
    folder = save_quietstar(model, tokenizer, random_head(32), HeadInfo(2, "<|startofthought|>", "<|endofthought|>"), tmp_path / "m")
    (folder / HEAD_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ForgeError, match="corrupted"):
        load_head(folder)
    (folder / HEAD_FILE).unlink()
    with pytest.raises(ForgeError, match="not the output of the quietstar stage"):
        load_quietstar(folder)


def test_copy_head_carries_thinking_to_another_folder(tiny_thinker, tmp_path):
    model, tokenizer, _ = tiny_thinker
    src = save_quietstar(model, tokenizer, random_head(32), HeadInfo(2, "<|startofthought|>", "<|endofthought|>"), tmp_path / "a")
    dst = tmp_path / "b"
    dst.mkdir()
    assert copy_head(src, dst) and has_head(dst)
    assert not copy_head(dst / "nowhere", tmp_path)
