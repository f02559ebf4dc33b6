"""Storage of a thinking agent: an ordinary HF folder any loader reads, plus the mixing head file that
`load_agent` restores; bad head files are ForgeErrors."""

from __future__ import annotations

import pytest
import torch
from quietstar_helpers import random_head
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from agent_forge.errors import ForgeError
from agent_forge.inference import generate_with_thoughts
from agent_forge.models import Agent, load_agent, load_model, save_agent, with_thoughts
from agent_forge.models.formats.thoughts import HEAD_FILE, HeadInfo, has_head, load_head

PROMPTS = ["12+34", "max 9 1 4"]


def test_round_trip_keeps_tokens_head_and_thinking(tiny_thinker, tmp_path):
    model, tokenizer, tokens = tiny_thinker
    head = random_head(model.config.hidden_size)
    before = generate_with_thoughts(model, tokenizer, head, PROMPTS, thought_length=3, max_new_tokens=5, progress=False)
    folder = _save(model, tokenizer, head, tokens, 3, tmp_path / "m")
    assert has_head(folder) and (folder / "config.json").is_file()

    loaded = load_agent(folder, device="cpu", dtype="float32")
    assert loaded.thinks and loaded.thoughts.tokens == tokens and loaded.thoughts.thought_length == 3
    for a, b in zip(head.state_dict().values(), loaded.thoughts.head.state_dict().values()):
        assert torch.equal(a, b)
    after = generate_with_thoughts(
        loaded.model, loaded.tokenizer, loaded.thoughts.head, PROMPTS, thought_length=loaded.thoughts.thought_length,
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


def _save(model, tokenizer, head, tokens, length, folder):
    info = HeadInfo(length, "<|startofthought|>", "<|endofthought|>")
    return save_agent(with_thoughts(Agent(model, tokenizer), head, tokens, info), folder)


def test_missing_or_corrupted_head_is_a_forge_error(tiny_thinker, tmp_path):
    model, tokenizer, tokens = tiny_thinker
    folder = _save(model, tokenizer, random_head(32), tokens, 2, tmp_path / "m")
    (folder / HEAD_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ForgeError, match="corrupted"):
        load_agent(folder)
    (folder / HEAD_FILE).unlink()
    with pytest.raises(ForgeError, match="not the output of the quietstar stage"):
        load_head(folder)
    assert not load_agent(folder).thinks  # without the head file it is a plain (non-thinking) agent


def test_a_reloaded_agent_carries_its_head_to_the_next_folder(tiny_thinker, tmp_path):
    """What every later stage does: load_agent, change the model, save_agent; the head travels explicitly."""
    model, tokenizer, tokens = tiny_thinker
    src = _save(model, tokenizer, random_head(32), tokens, 2, tmp_path / "a")
    agent = load_agent(src)
    with torch.no_grad():
        agent.model.get_input_embeddings().weight[5] += 1.0
    dst = save_agent(agent, tmp_path / "b")
    assert has_head(dst)
    again = load_agent(dst)
    assert again.thoughts.thought_length == 2
    for a, b in zip(agent.thoughts.head.state_dict().values(), again.thoughts.head.state_dict().values()):
        assert torch.equal(a, b)


def test_head_file_bytes_are_reproducible(tiny_thinker, tmp_path):
    """safetensors orders its metadata by hash; the head file sorts it, so a resumed run writes equal bytes."""
    from safetensors import safe_open

    model, tokenizer, tokens = tiny_thinker
    head = random_head(32)
    blobs = {_save(model, tokenizer, head, tokens, 2, tmp_path / name).joinpath(HEAD_FILE).read_bytes() for name in "abcd"}
    assert len(blobs) == 1
    with safe_open(str(tmp_path / "a" / HEAD_FILE), framework="pt") as handle:
        assert handle.metadata()["thought_length"] == "2" and handle.metadata()["depth"] == str(head.depth)
