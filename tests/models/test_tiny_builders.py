"""The tiny profile's character tokenizer and Llama builder, and the device/dtype defaults."""

import pytest
import torch
from transformers import AutoTokenizer

from agent_forge.config import TinyModelConfig
from agent_forge.errors import ForgeError
from agent_forge.models import (
    build_tiny_model, build_tiny_tokenizer, default_device, default_dtype, resolve_device, resolve_dtype,
)


def test_every_character_is_one_token_and_text_round_trips(tiny_tokenizer):
    text = "12+345=357\nabc xyz (ok)?"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tiny_tokenizer.decode(ids) == text
    assert tiny_tokenizer.convert_ids_to_tokens(ids) == list(text)


def test_bos_is_prepended_and_specials_exist(tiny_tokenizer):
    ids = tiny_tokenizer("ab")["input_ids"]
    assert ids[0] == tiny_tokenizer.bos_token_id and len(ids) == 3
    specials = {tiny_tokenizer.pad_token, tiny_tokenizer.bos_token, tiny_tokenizer.eos_token, tiny_tokenizer.unk_token}
    assert specials == {"<pad>", "<bos>", "<eos>", "<unk>"}
    assert not getattr(tiny_tokenizer, "chat_template", None)
    # the eos text inside a string is the eos token, not five characters
    assert tiny_tokenizer("a<eos>", add_special_tokens=False)["input_ids"] == [
        tiny_tokenizer.convert_tokens_to_ids("a"), tiny_tokenizer.eos_token_id,
    ]


def test_unknown_characters_map_to_unk(tiny_tokenizer):
    ids = tiny_tokenizer("a\u00e9b", add_special_tokens=False)["input_ids"]
    assert ids[1] == tiny_tokenizer.unk_token_id and len(ids) == 3


def test_ids_do_not_depend_on_corpus_order():
    a = build_tiny_tokenizer(["cab", "21"])
    b = build_tiny_tokenizer(["12", "abc"])
    assert a.get_vocab() == b.get_vocab()
    assert len(a) == 4 + 5


def test_saved_tokenizer_reloads_with_plain_autotokenizer(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "9*9=18\nxyz"
    assert again(text)["input_ids"] == tiny_tokenizer(text)["input_ids"]
    assert again.decode(again(text)["input_ids"], skip_special_tokens=True) == text


def test_empty_corpus_is_a_user_error():
    with pytest.raises(ForgeError, match="empty corpus"):
        build_tiny_tokenizer([])


def test_model_is_deterministic_by_seed_and_tied(tiny_tokenizer, tiny_config):
    a = build_tiny_model(tiny_tokenizer, tiny_config, seed=3)
    b = build_tiny_model(tiny_tokenizer, tiny_config, seed=3)
    c = build_tiny_model(tiny_tokenizer, tiny_config, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert a.lm_head.weight is a.model.embed_tokens.weight
    assert a.config.vocab_size == len(tiny_tokenizer)
    assert not a.training and a.dtype == torch.float32


def test_building_a_model_leaves_the_global_rng_alone(tiny_tokenizer, tiny_config):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tiny_tokenizer, tiny_config, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_inconsistent_head_counts_are_user_errors(tiny_tokenizer):
    with pytest.raises(ForgeError, match="divisible"):
        build_tiny_model(tiny_tokenizer, TinyModelConfig(hidden_size=30, num_attention_heads=4), seed=0)
    with pytest.raises(ForgeError, match="multiple"):
        build_tiny_model(tiny_tokenizer, TinyModelConfig(num_attention_heads=4, num_key_value_heads=3), seed=0)


def test_device_and_dtype_defaults_and_overrides():
    device = default_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default_dtype("cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ForgeError, match="unknown dtype"):
        resolve_dtype("float8")
    if not torch.cuda.is_available():
        with pytest.raises(ForgeError, match="CUDA is not available"):
            resolve_device("cuda")
