"""add_special_tokens: unsplittable tokens, grown embeddings, deterministic initial rows, tied or untied heads."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.errors import ForgeError
from agent_forge.models import add_special_tokens, generate

THOUGHTS = ["<|startofthought|>", "<|endofthought|>"]


@pytest.fixture
def tok(tiny_tokenizer):
    return copy.deepcopy(tiny_tokenizer)


def _row(model, token_id):
    return model.get_input_embeddings().weight[token_id]


def test_tokens_are_appended_special_and_unsplit(tiny_model, tok):
    before = len(tok)
    ids = add_special_tokens(tiny_model, tok, THOUGHTS, init_from="---")
    assert ids == [before, before + 1]
    assert tiny_model.get_input_embeddings().weight.shape[0] == before + 2
    assert tiny_model.config.vocab_size == before + 2
    assert tiny_model.lm_head.weight is tiny_model.model.embed_tokens.weight
    encoded = tok("a<|startofthought|>b<|endofthought|>", add_special_tokens=False)["input_ids"]
    assert encoded[1] == ids[0] and encoded[3] == ids[1] and len(encoded) == 4
    assert tok.decode(encoded, skip_special_tokens=True) == "ab"
    assert set(THOUGHTS) <= set(tok.all_special_tokens)


def test_rows_start_from_the_init_string(tiny_model, tok):
    dash = tok.convert_tokens_to_ids("-")
    plus = tok.convert_tokens_to_ids("+")
    expected_dash = _row(tiny_model, dash).clone()
    expected_mix = (_row(tiny_model, dash) + _row(tiny_model, plus)).clone() / 2
    (start,) = add_special_tokens(tiny_model, tok, ["<a>"], init_from="---")
    (mixed,) = add_special_tokens(tiny_model, tok, ["<b>"], init_from="-+")
    assert torch.allclose(_row(tiny_model, start), expected_dash, atol=1e-6)
    assert torch.allclose(_row(tiny_model, mixed), expected_mix, atol=1e-6)


def test_without_init_rows_are_the_mean_embedding(tiny_model, tok):
    mean = tiny_model.get_input_embeddings().weight.mean(0).clone()
    (new,) = add_special_tokens(tiny_model, tok, ["<tool>"])
    assert torch.allclose(_row(tiny_model, new), mean, atol=1e-6)


def test_existing_tokens_keep_their_ids_and_rows(tiny_model, tok):
    first = add_special_tokens(tiny_model, tok, THOUGHTS, init_from="---")
    with torch.no_grad():
        tiny_model.get_input_embeddings().weight[first[0]] += 1.0
    trained = _row(tiny_model, first[0]).clone()
    again = add_special_tokens(tiny_model, tok, THOUGHTS + ["<|tool|>"], init_from="+")
    assert again[:2] == first and again[2] == first[1] + 1
    assert torch.equal(_row(tiny_model, first[0]), trained)


def test_untied_head_rows_are_initialised_too(tok):
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=4, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    dash = tok.convert_tokens_to_ids("-")
    head_dash = model.lm_head.weight[dash].clone()
    (new,) = add_special_tokens(model, tok, ["<t>"], init_from="-")
    assert model.lm_head.weight.shape[0] == len(tok)
    assert torch.allclose(model.lm_head.weight[new], head_dash)
    assert torch.allclose(_row(model, new), _row(model, dash))


def test_model_still_generates_after_adding_tokens(tiny_model, tok):
    add_special_tokens(tiny_model, tok, THOUGHTS, init_from="---")
    out = generate(tiny_model, tok, ["ab<|startofthought|>"], max_new_tokens=3)
    assert len(out) == 1 and isinstance(out[0], str)


def test_bad_arguments_are_user_errors(tiny_model, tok):
    with pytest.raises(ForgeError, match="does not know"):
        add_special_tokens(tiny_model, tok, ["<x>"], init_from="\u00e9")
    with pytest.raises(ForgeError, match="non-empty"):
        add_special_tokens(tiny_model, tok, [""])
    with pytest.raises(ForgeError, match="no tokens"):
        add_special_tokens(tiny_model, tok, ["<x>"], init_from="")
